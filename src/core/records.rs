//! Record versions and writes on the owner shard: the version rules of deepstream, whole
//! updates kept as the bytes received (once checked to be a JSON object or array), path patches
//! applied to JSON read as the clients read it.

use super::json;
use super::jsonpath::{self, Path};
use bytes::Bytes;
use simd_json::prelude::*;

/// A record as stored: its version and its JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub version: i32,
    pub data: Bytes,
}

/// What a write asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Whole data, forwarded without parsing.
    Replace(Bytes),
    /// JSON `value` at `path`.
    Set {
        path: Bytes,
        value: Bytes,
    },
    Erase {
        path: Bytes,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Applied(StoredRecord),
    /// The writer's version is not newer: it gets the current state to merge.
    VersionExists(StoredRecord),
    /// The writer skipped versions.
    InvalidVersion(i32),
    /// The data or the stored document is not JSON, the path is unusable, or the record would
    /// grow past its size limit.
    InvalidData(String),
}

pub const EMPTY_OBJECT: &[u8] = b"{}";

/// Applies one write to `current` under the version rules: -1 upserts, current + 1 writes,
/// anything at or below current is VERSION_EXISTS, anything above current + 1 is invalid.
/// A patched record may not encode to more than `max_bytes`.
pub fn apply_write(
    current: Option<&StoredRecord>,
    version: i32,
    change: &Change,
    max_bytes: usize,
) -> WriteOutcome {
    let current_version = current.map_or(0, |r| r.version);
    let next = if version == -1 {
        current_version.saturating_add(1)
    } else {
        version
    };
    if version != -1 {
        if version <= current_version {
            let record = current.cloned().unwrap_or_else(|| StoredRecord {
                version: current_version,
                data: Bytes::from_static(EMPTY_OBJECT),
            });
            return WriteOutcome::VersionExists(record);
        }
        if version > current_version.saturating_add(1) {
            return WriteOutcome::InvalidVersion(current_version);
        }
    }
    let data = match change {
        Change::Replace(data) => json::validate_record(data)
            .map(|()| data.clone())
            .map_err(|e| e.to_string()),
        Change::Set { path, value } => patch(current, path, Some(value), max_bytes),
        Change::Erase { path } => patch(current, path, None, max_bytes),
    };
    let data = match data {
        Ok(data) => data,
        Err(reason) => return WriteOutcome::InvalidData(reason),
    };
    WriteOutcome::Applied(StoredRecord {
        version: next,
        data,
    })
}

/// Checks a path as the owner will read it, without the record: the connection's shard refuses
/// a path that can never apply before it travels. (The value is read once, by the owner.)
pub fn check_path(path: &[u8]) -> Result<(), String> {
    Path::parse(path).map(|_| ()).map_err(|e| e.to_string())
}

fn patch(
    current: Option<&StoredRecord>,
    path: &[u8],
    value: Option<&Bytes>,
    max_bytes: usize,
) -> Result<Bytes, String> {
    let path = Path::parse(path).map_err(|e| e.to_string())?;
    let value = match value {
        Some(bytes) => {
            Some(json::parse(bytes).map_err(|e| format!("patch value is not JSON: {e}"))?)
        }
        None => None,
    };
    let mut root = match current {
        Some(record) => json::parse(&record.data).map_err(|_| "stored record is not JSON")?,
        None => simd_json::OwnedValue::Object(Box::default()),
    };
    jsonpath::set_path(&mut root, &path, value).map_err(|e| e.to_string())?;
    let text = root.encode();
    if text.len() > max_bytes {
        return Err(format!("the record would be larger than {max_bytes} bytes"));
    }
    Ok(Bytes::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    fn rec(version: i32, data: &str) -> StoredRecord {
        StoredRecord {
            version,
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    fn replace(data: &str) -> Change {
        Change::Replace(Bytes::copy_from_slice(data.as_bytes()))
    }

    fn set(path: &str, value: &str) -> Change {
        Change::Set {
            path: Bytes::copy_from_slice(path.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn version_rules() {
        let current = rec(3, r#"{"a":1}"#);
        assert_eq!(
            apply_write(Some(&current), 4, &replace("{}"), MAX),
            WriteOutcome::Applied(rec(4, "{}"))
        );
        assert_eq!(
            apply_write(Some(&current), -1, &replace("{}"), MAX),
            WriteOutcome::Applied(rec(4, "{}"))
        );
        assert_eq!(
            apply_write(Some(&current), 3, &replace("{}"), MAX),
            WriteOutcome::VersionExists(current.clone())
        );
        assert_eq!(
            apply_write(Some(&current), 1, &replace("{}"), MAX),
            WriteOutcome::VersionExists(current.clone())
        );
        assert_eq!(
            apply_write(Some(&current), 6, &replace("{}"), MAX),
            WriteOutcome::InvalidVersion(3)
        );
        assert_eq!(
            apply_write(None, -1, &replace("[]"), MAX),
            WriteOutcome::Applied(rec(1, "[]"))
        );
        assert_eq!(
            apply_write(None, 1, &replace("[]"), MAX),
            WriteOutcome::Applied(rec(1, "[]"))
        );
    }

    #[test]
    fn patches_and_erases() {
        let current = rec(1, r#"{"a":{"b":1}}"#);
        assert_eq!(
            apply_write(Some(&current), 2, &set("a.c", "\"x\""), MAX),
            WriteOutcome::Applied(rec(2, r#"{"a":{"b":1,"c":"x"}}"#))
        );
        let erase = Change::Erase {
            path: Bytes::from_static(b"a"),
        };
        assert_eq!(
            apply_write(Some(&current), 2, &erase, MAX),
            WriteOutcome::Applied(rec(2, "{}"))
        );
        assert!(matches!(
            apply_write(Some(&current), 2, &set("a", "{bad"), MAX),
            WriteOutcome::InvalidData(ref r) if r.starts_with("patch value is not JSON")
        ));
        let garbage = rec(1, "not json");
        assert_eq!(
            apply_write(Some(&garbage), 2, &set("a", "1"), MAX),
            WriteOutcome::InvalidData("stored record is not JSON".into())
        );
    }

    #[test]
    fn whole_data_must_be_an_object_or_an_array() {
        for bad in ["not json at all", "{\"a\":", "5", "null", "\"x\""] {
            assert!(
                matches!(
                    apply_write(None, -1, &replace(bad), MAX),
                    WriteOutcome::InvalidData(_)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_patch_may_not_grow_the_record_past_its_limit() {
        let current = rec(1, "{}");
        assert!(matches!(
            apply_write(Some(&current), 2, &set("a[60000]", "1"), 1000),
            WriteOutcome::InvalidData(ref r) if r.contains("larger than 1000")
        ));
        assert!(matches!(
            apply_write(Some(&current), 2, &set(&"[65536]".repeat(1500), "1"), MAX),
            WriteOutcome::InvalidData(_)
        ));
        let deep = "a.".repeat(17_000) + "a";
        assert!(matches!(
            apply_write(Some(&current), 2, &set(&deep, "1"), MAX),
            WriteOutcome::InvalidData(_)
        ));
        assert!(check_path(deep.as_bytes()).is_err());
        assert!(check_path(b"a.b").is_ok());
        assert!(check_path(b"a[-1]").is_err());
    }

    /// A write sequence against a simple model: the model counts versions and keeps a map of
    /// top-level keys; the real thing must agree on every outcome and on the final document.
    #[derive(Debug, Clone)]
    enum Op {
        Replace(u8),
        Set(u8, u8),
        Erase(u8),
    }

    fn op() -> impl Strategy<Value = (Op, i32)> {
        let op = prop_oneof![
            (0u8..4).prop_map(Op::Replace),
            (0u8..4, 0u8..9).prop_map(|(k, v)| Op::Set(k, v)),
            (0u8..4).prop_map(Op::Erase),
        ];
        (op, -2i32..3)
    }

    proptest! {
        #[test]
        fn random_writes_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
            let mut stored: Option<StoredRecord> = None;
            let mut model_version = 0;
            let mut model: std::collections::BTreeMap<String, u8> = Default::default();
            for (op, version_offset) in ops {
                // offset -2 means "send -1 (upsert)"; otherwise current + offset
                let version = if version_offset == -2 { -1 } else { model_version + version_offset };
                let change = match &op {
                    Op::Replace(k) => replace(&format!(r#"{{"k{k}":0}}"#)),
                    Op::Set(k, v) => set(&format!("k{k}"), &v.to_string()),
                    Op::Erase(k) => Change::Erase { path: Bytes::from(format!("k{k}")) },
                };
                let outcome = apply_write(stored.as_ref(), version, &change, MAX);
                let accepted = version == -1 || version == model_version + 1;
                if accepted {
                    model_version += 1;
                    match op {
                        Op::Replace(k) => { model.clear(); model.insert(format!("k{k}"), 0); }
                        Op::Set(k, v) => { model.insert(format!("k{k}"), v); }
                        Op::Erase(k) => { model.remove(&format!("k{k}")); }
                    }
                    let WriteOutcome::Applied(record) = outcome else { panic!("{outcome:?}") };
                    prop_assert_eq!(record.version, model_version);
                    stored = Some(record);
                } else if version <= model_version {
                    prop_assert!(matches!(outcome, WriteOutcome::VersionExists(ref r) if r.version == model_version));
                } else {
                    prop_assert_eq!(outcome, WriteOutcome::InvalidVersion(model_version));
                }
            }
            let mut text = stored.map_or_else(|| b"{}".to_vec(), |r| r.data.to_vec());
            let value = simd_json::to_owned_value(&mut text).unwrap();
            let expected: String = format!("{{{}}}", model.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect::<Vec<_>>().join(","));
            let mut expected = expected.into_bytes();
            prop_assert_eq!(value, simd_json::to_owned_value(&mut expected).unwrap());
        }
    }
}
