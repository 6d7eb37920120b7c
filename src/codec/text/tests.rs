use super::*;

fn v3(text: &str) -> Bytes {
    Bytes::from(text.replace('|', "\x1f").replace('+', "\x1e"))
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace('\x1f', "|")
        .replace('\x1e', "+")
}

fn decoded(text: &str) -> Vec<Inbound> {
    let mut out = Vec::new();
    decode(&v3(text), &mut out);
    out
}

fn one(text: &str) -> Message {
    match decoded(text).pop() {
        Some(Inbound::Message(msg)) => *msg,
        other => panic!("{text}: {other:?}"),
    }
}

fn reply(text: &str) -> String {
    match decoded(text).pop() {
        Some(Inbound::Reply(bytes)) => show(&bytes),
        other => panic!("{text}: {other:?}"),
    }
}

fn encoded(msg: &Message) -> String {
    let mut out = Vec::new();
    encode(msg, &mut out);
    show(&out)
}

fn b(text: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(text.as_bytes()))
}

#[test]
fn reads_login_events_and_subscriptions() {
    let auth = one("A|REQ|{\"username\":\"u\"}");
    assert_eq!((auth.topic, auth.action), (topic::AUTH, aa::REQUEST));
    assert_eq!(auth.data, b("{\"username\":\"u\"}"));
    let sub = one("E|S|news");
    assert_eq!(sub.action, ea::SUBSCRIBE);
    assert_eq!(sub.names, vec![Bytes::from_static(b"news")]);
    assert_eq!(sub.correlation_id, b("news"));
    let emit = one("E|EVT|news|O{\"a\":1}");
    assert_eq!((emit.action, emit.data), (ea::EMIT, b("{\"a\":1}")));
    assert_eq!(one("E|EVT|news|Shi").data, b("\"hi\""));
    assert_eq!(one("E|EVT|news|U").data, None);
    assert_eq!(one("E|EVT|news").data, None);
    let accept = one("E|LA|n/.*|n/1");
    assert_eq!(accept.name, b("n/.*"));
    assert_eq!(accept.subscription, b("n/1"));
    // Several messages in one frame, stray separators skipped.
    assert_eq!(decoded("E|S|a+E|S|b++").len(), 2);
    assert!(decoded("C|PO").is_empty());
}

#[test]
fn reads_record_writes_with_their_version_as_correlation() {
    let update = one("R|U|r|3|{\"x\":1}|{\"writeSuccess\":true}");
    assert_eq!(update.action, ra::UPDATE);
    assert_eq!(update.version, Some(3));
    assert_eq!(update.data, b("{\"x\":1}"));
    assert_eq!(update.is_write_ack, Some(true));
    assert_eq!(update.correlation_id, b("3"));
    let patch = one("R|P|r|4|a.b|N5");
    assert_eq!(
        (patch.action, patch.path, patch.data),
        (ra::PATCH, b("a.b"), b("5"))
    );
    assert_eq!(patch.is_write_ack, None);
    let erase = one("R|P|r|5|a|U");
    assert_eq!((erase.action, erase.data), (ra::ERASE, None));
    let set = one("R|CU|r|-1|{\"z\":1}|{}");
    assert_eq!((set.action, set.version), (ra::CREATEANDUPDATE, Some(-1)));
    let set_path = one("R|CU|r|-1|z|N2|{\"writeSuccess\":true}");
    assert_eq!(set_path.action, ra::CREATEANDPATCH);
    assert_eq!((set_path.path, set_path.data), (b("z"), b("2")));
    assert_eq!(one("R|CR|r").action, ra::SUBSCRIBECREATEANDREAD);
    assert_eq!(one("R|SN|r").action, ra::READ);
    assert_eq!(one("R|HD|r").action, ra::HEAD);
    assert_eq!(one("R|H|r").correlation_id.as_deref(), Some(HAS));
}

#[test]
fn reads_rpc_and_presence() {
    let req = one("P|REQ|add|c1|O{\"a\":1}");
    assert_eq!(
        (req.action, req.correlation_id, req.data),
        (pa::REQUEST, b("c1"), b("{\"a\":1}"))
    );
    assert_eq!(one("P|A|REQ|add|c1").action, pa::ACCEPT);
    assert_eq!(one("P|RES|add|c1|N3").data, b("3"));
    let err = one("P|E|boom|add|c1");
    assert_eq!(
        (err.action, err.data, err.name),
        (pa::REQUEST_ERROR, b("\"boom\""), b("add"))
    );
    assert_eq!(one("U|Q|Q").action, ua::QUERY_ALL);
    let query = one("U|Q|q1|[\"a\",\"b\"]");
    assert_eq!((query.action, query.names.len()), (ua::QUERY, 2));
    assert_eq!(one("U|S|S").action, ua::SUBSCRIBE_ALL);
    assert_eq!(one("U|US|US").action, ua::UNSUBSCRIBE_ALL);
    let sub = one("U|S|7|[\"alice\"]");
    assert_eq!((sub.action, sub.correlation_id), (ua::SUBSCRIBE, b("7")));
}

#[test]
fn bad_input_is_answered_not_dropped() {
    assert_eq!(reply("X|Y"), "X|E|UNKNOWN_TOPIC|X+");
    assert_eq!(reply("R|ZZ|q"), "R|E|UNKNOWN_ACTION|unknown action ZZ+");
    assert_eq!(reply("U|S|US"), "U|E|INVALID_MESSAGE_DATA|US+");
    assert_eq!(reply("E|EVT|n|Qx"), "E|E|INVALID_MESSAGE_DATA|Qx+");
    assert_eq!(reply("R|U|r|x|{}"), "R|E|INVALID_MESSAGE_DATA|x+");
    assert_eq!(reply("R|U|r|1|{nope"), "R|E|INVALID_MESSAGE_DATA|{nope+");
    assert!(reply("R|U").starts_with("X|E|MESSAGE_PARSE_ERROR|"));
    assert!(reply("E|S|a|b|c|d|e|f|g|h|i").starts_with("X|E|MESSAGE_PARSE_ERROR|too many"));
    let long = format!("Q{}", "é".repeat(300));
    assert!(reply(&long).len() < 260);
}

#[test]
fn writes_what_the_reference_writes() {
    let m = |topic, action| Message::new(topic, action);
    assert_eq!(encoded(&m(topic::CONNECTION, ca::ACCEPT)), "C|A+");
    assert_eq!(encoded(&m(topic::CONNECTION, ca::PING)), "C|PI+");
    assert_eq!(encoded(&m(topic::AUTH, aa::AUTH_SUCCESSFUL)), "A|A+");
    let ok = Message {
        data: b("{\"id\":1}"),
        ..m(topic::AUTH, aa::AUTH_SUCCESSFUL)
    };
    assert_eq!(encoded(&ok), "A|A|O{\"id\":1}+");
    assert_eq!(
        encoded(&m(topic::AUTH, aa::AUTH_UNSUCCESSFUL)),
        "A|E|INVALID_AUTH_DATA|U+"
    );
    let ack = Message {
        is_ack: Some(true),
        correlation_id: b("news"),
        ..m(topic::EVENT, ea::SUBSCRIBE)
    };
    assert_eq!(encoded(&ack), "E|A|S|news+");
    let emit = Message {
        name: b("news"),
        data: b("\"hi\""),
        ..m(topic::EVENT, ea::EMIT)
    };
    assert_eq!(encoded(&emit), "E|EVT|news|Shi+");
    let found = Message {
        name: b("n/.*"),
        subscription: b("n/1"),
        ..m(topic::EVENT, ea::SUBSCRIPTION_FOR_PATTERN_FOUND)
    };
    assert_eq!(encoded(&found), "E|SP|n/.*|n/1+");
    let read = Message {
        name: b("r"),
        version: Some(2),
        data: b("{\"x\":1}"),
        ..m(topic::RECORD, ra::READ_RESPONSE)
    };
    assert_eq!(encoded(&read), "R|R|r|2|{\"x\":1}+");
    let cr_ack = Message {
        is_ack: Some(true),
        correlation_id: b("r"),
        ..m(topic::RECORD, ra::SUBSCRIBECREATEANDREAD)
    };
    assert_eq!(encoded(&cr_ack), "R|A|S|r+");
    let patch = Message {
        name: b("r"),
        version: Some(3),
        path: b("a.b"),
        data: b("5"),
        ..m(topic::RECORD, ra::PATCH)
    };
    assert_eq!(encoded(&patch), "R|P|r|3|a.b|N5+");
    let wa = Message {
        name: b("r"),
        correlation_id: b("-1"),
        ..m(topic::RECORD, ra::WRITE_ACKNOWLEDGEMENT)
    };
    assert_eq!(encoded(&wa), "R|WA|r|[-1]|L+");
    let exists = Message {
        name: b("r"),
        version: Some(2),
        data: b("{}"),
        ..m(topic::RECORD, ra::VERSION_EXISTS)
    };
    assert_eq!(encoded(&exists), "R|E|VERSION_EXISTS|r|2|{}+");
    let has = Message {
        name: b("r"),
        version: Some(-1),
        correlation_id: Some(Bytes::from_static(HAS)),
        ..m(topic::RECORD, ra::HEAD_RESPONSE)
    };
    assert_eq!(encoded(&has), "R|H|r|F+");
    let deleted = Message {
        name: b("r"),
        ..m(topic::RECORD, ra::DELETE_SUCCESS)
    };
    assert_eq!(encoded(&deleted), "R|A|D|r+");
    let no_provider = Message {
        name: b("add"),
        correlation_id: b("c2"),
        ..m(topic::RPC, pa::NO_RPC_PROVIDER)
    };
    assert_eq!(encoded(&no_provider), "P|E|NO_RPC_PROVIDER|add|c2+");
    let error = Message {
        name: b("add"),
        correlation_id: b("c2"),
        data: b("\"boom\""),
        ..m(topic::RPC, pa::REQUEST_ERROR)
    };
    assert_eq!(encoded(&error), "P|E|boom|add|c2+");
    let all = Message {
        names: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        ..m(topic::PRESENCE, ua::QUERY_ALL_RESPONSE)
    };
    assert_eq!(encoded(&all), "U|Q|a|b+");
    let denied = Message {
        name: b("r"),
        original_action: Some(ra::DELETE),
        ..m(topic::RECORD, ra::MESSAGE_DENIED)
    };
    assert_eq!(encoded(&denied), "R|E|MESSAGE_DENIED|r|D+");
    assert_eq!(encoded(&m(topic::CONNECTION, ca::CLOSING)), "");
}

#[test]
fn round_trips_keep_data() {
    for text in [
        "E|EVT|n|Sa b",
        "E|EVT|n|N1.5",
        "E|EVT|n|O{\"k\":[1,2]}",
        "P|REQ|f|c|T",
        "R|P|r|2|p|L",
    ] {
        let msg = one(text);
        assert_eq!(encoded(&msg), format!("{text}+"), "{text}");
    }
}

#[test]
fn record_listen_responses_name_the_subscription() {
    let accept = one("R|LA|r/.*|r/1");
    assert_eq!(
        (accept.action, accept.subscription),
        (ra::LISTEN_ACCEPT, b("r/1"))
    );
    let listen = one("R|L|r/.*");
    assert_eq!((listen.action, listen.subscription), (ra::LISTEN, None));
}

#[test]
fn updates_wait_for_the_read_they_race() {
    let mut reads = ReadsInFlight::default();
    reads.on_request(&one("R|CR|r"));
    let update = Message {
        name: b("r"),
        version: Some(1),
        data: b("{}"),
        ..Message::new(topic::RECORD, ra::UPDATE)
    };
    let other = Message {
        name: b("s"),
        ..update.clone()
    };
    assert!(!reads.passes(&update), "held back before the read answer");
    assert!(reads.passes(&other));
    let read = Message {
        action: ra::READ_RESPONSE,
        ..update.clone()
    };
    assert!(reads.passes(&read));
    assert!(reads.passes(&update), "passes after it");
}
