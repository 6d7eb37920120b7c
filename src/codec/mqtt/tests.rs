use super::*;

fn connect(username: &str, password: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_u16(4);
    body.put_slice(b"MQTT");
    body.put_u8(4);
    body.put_u8(0xC2); // username, password, clean session
    body.put_u16(30);
    for field in ["client-1", username, password] {
        body.put_u16(field.len() as u16);
        body.put_slice(field.as_bytes());
    }
    packet(CONNECT, 0, &body).to_vec()
}

fn run(session: &mut Session, bytes: &[u8]) -> Result<Vec<Action>, MqttError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    session.decode(&mut buf, 1 << 20, &mut out)?;
    Ok(out)
}

fn to_shard(actions: &[Action]) -> Vec<&Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToShard(m) => Some(&**m),
            _ => None,
        })
        .collect()
}

fn connected() -> Session {
    let mut session = Session::default();
    run(&mut session, &connect("u", "p")).expect("connect");
    session.encode(
        &Message::new(topic::AUTH, aa::AUTH_SUCCESSFUL),
        &mut Vec::new(),
    );
    session
}

#[test]
fn packets_behind_the_connect_wait_for_the_login() {
    let mut session = Session::default();
    let mut bytes = connect("u", "p");
    bytes.extend_from_slice(&packet(PINGREQ, 0, &[]));
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    session.decode(&mut buf, 1 << 20, &mut out).expect("decode");
    assert_eq!(to_shard(&out).len(), 2, "the login only");
    assert!(!out.iter().any(|a| matches!(a, Action::Send(_))));
    assert_eq!(buf.len(), 2, "the PINGREQ waits");
    session.encode(
        &Message::new(topic::AUTH, aa::AUTH_SUCCESSFUL),
        &mut Vec::new(),
    );
    let mut out = Vec::new();
    session.decode(&mut buf, 1 << 20, &mut out).expect("decode");
    assert_eq!(out, vec![Action::Send(Bytes::from_static(&[0xD0, 0]))]);
}

#[test]
fn a_retained_publish_not_stored_closes_instead_of_acknowledging() {
    let mut session = connected();
    let mut body = Vec::new();
    body.put_u16(3);
    body.put_slice(b"a/b");
    body.put_u16(7);
    body.put_slice(br#"{"n":7}"#);
    let actions = run(&mut session, &packet(PUBLISH, 0b0011, &body)).expect("publish");
    let write = to_shard(&actions)[0].clone();
    let denied = Message {
        correlation_id: write.correlation_id.clone(),
        is_error: Some(true),
        ..Message::new(topic::RECORD, ra::MESSAGE_DENIED)
    };
    let mut out = Vec::new();
    session.encode(&denied, &mut out);
    assert!(matches!(out.as_slice(), [Action::Close(_)]), "{out:?}");
}

#[test]
fn connect_logs_in_with_username_and_password() {
    let mut session = Session::default();
    let actions = run(&mut session, &connect("dev", "pw")).expect("connect");
    let msgs = to_shard(&actions);
    assert_eq!(
        (msgs[0].topic, msgs[0].action),
        (topic::CONNECTION, ca::CHALLENGE)
    );
    assert_eq!(
        msgs[1].data.as_deref(),
        Some(&br#"{"password":"pw","username":"dev"}"#[..])
    );
    assert_eq!(session.keep_alive, 30);
    let mut out = Vec::new();
    session.encode(&Message::new(topic::AUTH, aa::AUTH_SUCCESSFUL), &mut out);
    assert_eq!(
        out,
        vec![Action::Send(Bytes::from_static(&[0x20, 2, 0, 0]))]
    );
    let mut out = Vec::new();
    Session::default().encode(&Message::new(topic::AUTH, aa::AUTH_UNSUCCESSFUL), &mut out);
    assert_eq!(out[0], Action::Send(Bytes::from_static(&[0x20, 2, 0, 5])));
    assert!(matches!(out[1], Action::Close(_)));
}

#[test]
fn publish_emits_and_retained_publish_writes_the_record() {
    let mut session = connected();
    let mut body = Vec::new();
    body.put_u16(3);
    body.put_slice(b"a/b");
    body.put_u16(7);
    body.put_slice(br#"{"n":7}"#);
    let actions = run(&mut session, &packet(PUBLISH, 0b0011, &body)).expect("publish");
    let msgs = to_shard(&actions);
    assert_eq!(msgs[0].action, ra::CREATEANDUPDATE);
    assert_eq!(msgs[0].version, Some(-1));
    assert_eq!(msgs[0].is_write_ack, Some(true));
    assert_eq!(msgs[1].action, ea::EMIT);
    assert_eq!(msgs[1].data.as_deref(), Some(&br#""{\"n\":7}""#[..]));
    // No PUBACK until the store has it.
    assert!(!actions.iter().any(|a| matches!(a, Action::Send(_))));
    let ack = Message {
        correlation_id: msgs[0].correlation_id.clone(),
        ..Message::new(topic::RECORD, ra::WRITE_ACKNOWLEDGEMENT)
    };
    let mut out = Vec::new();
    session.encode(&ack, &mut out);
    assert_eq!(
        out,
        vec![Action::Send(Bytes::from_static(&[0x40, 2, 0, 7]))]
    );
    // QoS 1 without retain: acknowledged at once.
    let actions = run(&mut session, &packet(PUBLISH, 0b0010, &body)).expect("publish");
    assert_eq!(to_shard(&actions).len(), 1);
    assert!(actions.contains(&Action::Send(Bytes::from_static(&[0x40, 2, 0, 7]))));
}

#[test]
fn subscribe_is_acked_with_failures_for_denied_topics() {
    let mut session = connected();
    let mut body = vec![0, 9];
    for name in ["x", "y"] {
        body.put_u16(1);
        body.put_slice(name.as_bytes());
        body.put_u8(1);
    }
    let actions = run(&mut session, &packet(SUBSCRIBE, 2, &body)).expect("subscribe");
    let msgs = to_shard(&actions);
    assert_eq!(
        (msgs[0].topic, msgs[0].action, msgs[0].names.len()),
        (topic::EVENT, ea::SUBSCRIBE, 2)
    );
    assert_eq!(msgs[1].action, ra::SUBSCRIBEANDREAD);
    let mut out = Vec::new();
    let denied = Message {
        name: Some(Bytes::from_static(b"y")),
        original_action: Some(ea::SUBSCRIBE),
        ..Message::new(topic::EVENT, ea::MESSAGE_DENIED)
    };
    session.encode(&denied, &mut out);
    let ack = Message {
        is_ack: Some(true),
        correlation_id: msgs[0].correlation_id.clone(),
        ..Message::new(topic::EVENT, ea::SUBSCRIBE)
    };
    session.encode(&ack, &mut out);
    assert_eq!(
        out,
        vec![Action::Send(Bytes::from_static(&[0x90, 4, 0, 9, 0, 0x80]))]
    );
}

#[test]
fn bad_streams_are_errors() {
    let mut session = Session::default();
    assert!(run(&mut session, &packet(PINGREQ, 0, &[])).is_err());
    let mut session = connected();
    assert!(run(&mut session, &[0xC0, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(run(&mut session, &packet(SUBSCRIBE, 0, &[0, 1])).is_err());
    let mut session = connected();
    assert!(
        run(&mut session, &[0x30, 0xff, 0xff, 0x7f]).is_err(),
        "past the size limit"
    );
    let mut session = connected();
    let out = run(&mut session, &packet(PINGREQ, 0, &[])).expect("ping");
    assert_eq!(out, vec![Action::Send(Bytes::from_static(&[0xD0, 0]))]);
    // A partial packet waits for the rest.
    let mut session = connected();
    assert_eq!(run(&mut session, &[0x30, 10, 0]).expect("partial"), vec![]);
}

#[test]
fn events_and_records_reach_subscribers_as_publishes() {
    let mut session = connected();
    let mut out = Vec::new();
    let emit = Message {
        name: Some(Bytes::from_static(b"t")),
        data: Some(Bytes::from_static(b"\"hi\"")),
        ..Message::new(topic::EVENT, ea::EMIT)
    };
    session.encode(&emit, &mut out);
    assert_eq!(out, vec![Action::Send(publish(b"t", b"\"hi\"", false))]);
    let read = Message {
        name: Some(Bytes::from_static(b"t")),
        data: Some(Bytes::from_static(b"{}")),
        version: Some(1),
        ..Message::new(topic::RECORD, ra::READ_RESPONSE)
    };
    out.clear();
    session.encode(&read, &mut out);
    assert_eq!(out, vec![Action::Send(publish(b"t", b"{}", true))]);
}
