//! Valve rule evaluation per message: a name/user rule, and a rule that parses the data.

use corestream::permission::rules::{Permissions, RuleInput, RuleType, Section, User};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const RULES: &str = r#"
record:
  "*":
    read: true
  "profile/$userId":
    write: "user.id === $userId && user.data.role !== 'banned'"
  "price/*":
    write: "data.price > 0 && data.currency === 'EUR' && data.tags.includes('live')"
"#;

fn evaluation(c: &mut Criterion) {
    let permissions = Permissions::parse(RULES, "bench.yml", 3).expect("rules compile");
    let user = User {
        id: "alice".into(),
        authenticated: true,
        server_data: Some(
            simd_json::to_owned_value(&mut br#"{"role":"admin"}"#.to_vec()).expect("json"),
        ),
    };
    let payload = br#"{"price":12.5,"currency":"EUR","tags":["live","fx"],"venue":"XETRA","ts":1732400000000}"#;
    let mut group = c.benchmark_group("permission rule per message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("name and user ($variable)", |b| {
        b.iter(|| {
            let rule = permissions
                .applicable(Section::Record, RuleType::Write, black_box("profile/alice"))
                .expect("rule");
            black_box(rule.check(&RuleInput {
                user: &user,
                name: "profile/alice",
                action: 18,
                data: None,
                old_data: None,
                refs: &[],
                max_work: permissions.max_work(),
            }))
        })
    });
    group.bench_function("with data (parse 90 B payload + evaluate)", |b| {
        b.iter(|| {
            let rule = permissions
                .applicable(Section::Record, RuleType::Write, black_box("price/EURUSD"))
                .expect("rule");
            let data = simd_json::to_owned_value(&mut payload.to_vec()).ok();
            black_box(rule.check(&RuleInput {
                user: &user,
                name: "price/EURUSD",
                action: 18,
                data: data.as_ref(),
                old_data: None,
                refs: &[],
                max_work: permissions.max_work(),
            }))
        })
    });
    group.finish();
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
