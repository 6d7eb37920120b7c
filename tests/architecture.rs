//! The shape of `src/`: no import cycle between top-level modules, nor between the files of one
//! folder (a folder's `mod.rs` declaring its files is not counted as using them; a file using
//! what `mod.rs` itself defines is). Read from the source text: `crate::a::b` and `super::x`
//! paths, in `use` lines (with `{...}` groups) and in code, outside `#[cfg(test)] mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every source file as its module path (`shard/mod.rs` is `["shard"]`) and its text without
/// its unit tests.
fn modules(dir: &Path, prefix: &[String], out: &mut Vec<(Module, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if path.is_dir() {
            let mut inner = prefix.to_vec();
            inner.push(stem);
            modules(&path, &inner, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let mut module = prefix.to_vec();
        if stem != "mod" {
            module.push(stem);
        }
        if module == ["lib"] || module == ["main"] {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a source file");
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        out.push((module, text));
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a file names after `anchor` (`crate::` or `super::`): each `a::b::c`, and each
/// member of a `{...}` group (nested groups flattened onto their prefix).
fn paths_after(text: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(anchor) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + anchor.len()..];
        if before.is_some_and(is_ident) {
            continue;
        }
        collect(rest, Vec::new(), &mut found);
    }
    found
}

/// Reads one path (or group) at the start of `text` onto `prefix`.
fn collect(text: &str, prefix: Vec<String>, found: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut rest = text;
    if let Some(group) = rest.strip_prefix('{') {
        for member in split_group(group) {
            collect(member.trim(), path.clone(), found);
        }
        return;
    }
    loop {
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if end > 0 {
            path.push(rest[..end].to_string());
            rest = &rest[end..];
        }
        if let Some(after) = rest.strip_prefix("::") {
            if let Some(group) = after.strip_prefix('{') {
                for member in split_group(group) {
                    collect(member.trim(), path.clone(), found);
                }
                return;
            }
            rest = after;
            continue;
        }
        break;
    }
    if !path.is_empty() {
        found.push(path);
    }
}

/// The top-level members of a `{...}` group whose opening brace was already read.
fn split_group(group: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                members.push(&group[start..i]);
                return members;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                members.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    members
}

/// Strongly connected components with more than one member (Tarjan's, iteration bounded by
/// the graph's size).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, node: &'a str) {
        let n = s.index.len();
        s.index.insert(node, n);
        s.low.insert(node, n);
        s.stack.push(node);
        s.on_stack.insert(node);
        for next in s.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !s.index.contains_key(next) {
                visit(s, next);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(member) = s.stack.pop() {
                s.on_stack.remove(member);
                component.push(member.to_string());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn src_has_no_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    modules(&root, &[], &mut files);
    let known: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut top = Graph::new();
    let mut folders: BTreeMap<Module, Graph> = BTreeMap::new();
    for (module, text) in &files {
        let mut used: Vec<Vec<String>> = paths_after(text, "crate::");
        let parent = &module[..module.len().saturating_sub(1)];
        for path in paths_after(text, "super::") {
            let mut full = parent.to_vec();
            full.extend(path);
            used.push(full);
        }
        // A folder's mod.rs is the folder's module; a file is named within its folder.
        let folder: Module = if known
            .iter()
            .any(|k| k.len() > module.len() && k.starts_with(module))
        {
            module.clone()
        } else {
            parent.to_vec()
        };
        let me = if &folder == module {
            "mod".to_string()
        } else {
            module[module.len() - 1].clone()
        };
        for path in used {
            if let (Some(theirs), Some(mine)) = (path.first(), module.first()) {
                if theirs != mine && known.iter().any(|k| k.first() == Some(theirs)) {
                    top.entry(mine.clone()).or_default().insert(theirs.clone());
                }
            }
            if path.len() > folder.len() && path.starts_with(&folder) {
                let mut target = folder.clone();
                target.push(path[folder.len()].clone());
                let name = if known.contains(&target) {
                    path[folder.len()].clone()
                } else {
                    "mod".to_string()
                };
                if name != me && !(me == "mod" && name != "mod") {
                    folders
                        .entry(folder.clone())
                        .or_default()
                        .entry(me.clone())
                        .or_default()
                        .insert(name);
                }
            }
        }
    }
    let mut problems = Vec::new();
    for cycle in cycles(&top) {
        problems.push(format!("src/ top level: {}", cycle.join(" <-> ")));
    }
    for (folder, graph) in &folders {
        for cycle in cycles(graph) {
            problems.push(format!(
                "src/{}/: {}",
                folder.join("/"),
                cycle.join(" <-> ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reader_finds_paths_in_groups_and_code() {
    let text = "use crate::{a::{b, c::D}, e};\nlet x = super::f::g(crate::h::I);";
    let crate_paths = paths_after(text, "crate::");
    assert!(crate_paths.contains(&vec!["a".into(), "b".into()]));
    assert!(crate_paths.contains(&vec!["a".into(), "c".into(), "D".into()]));
    assert!(crate_paths.contains(&vec!["e".into()]));
    assert!(crate_paths.contains(&vec!["h".into(), "I".into()]));
    assert_eq!(
        paths_after(text, "super::"),
        vec![vec!["f".to_string(), "g".into()]]
    );
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("a".into());
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".into()]]);
}
