//! The membership parser and serializers against events captured from Element Call 0.26.1 on the
//! local stack (`tests/fixtures/element-call-0.26.1/`), and against generated input.

use matrix_sdk_rtc::CallSession;
use matrix_sdk_rtc::membership::{
    self, Dialect, FocusSelection, MembershipEvent, MembershipSlot, MembershipUpdate,
    SessionMembershipContent, StickyMembershipContent,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap()
}

fn event(name: &str) -> MembershipEvent {
    let json = fixture(name);
    let ts = json["origin_server_ts"].as_u64().unwrap();
    MembershipEvent::from_json(&json, ts + 1000).expect("a membership event")
}

#[test]
fn element_call_session_join() {
    let ev = event("element-call-0.26.1/session_join_state_event.json");
    let MembershipUpdate::Joined(list) = membership::parse(&ev) else { panic!("not a join") };
    let m = &list[0];
    assert_eq!(m.dialect, Dialect::Session);
    assert_eq!(m.user_id, "@ecalice1795633693:localhost");
    assert_eq!(m.device_id, "ECALICE1795633693EC");
    assert_eq!(m.livekit_identity, "@ecalice1795633693:localhost:ECALICE1795633693EC");
    assert_eq!(m.member_id, m.livekit_identity);
    assert_eq!(m.slot_id, "m.call#ROOM");
    assert_eq!(m.focus_selection, Some(FocusSelection::MultiSfu));
    assert_eq!(m.transports[0].livekit_service_url(), Some("http://127.0.0.1:38915"));
    // No created_ts on a first join: origin_server_ts counts, plus the 4 h expiry.
    assert_eq!(m.created_ts, 1_795_633_720_546);
    assert_eq!(m.expires_at, 1_795_633_720_546 + 14_400_000);
    assert_eq!(
        m.slot,
        MembershipSlot::State("_@ecalice1795633693:localhost_ECALICE1795633693EC_m.call".into())
    );
}

#[test]
fn element_call_session_leave_from_delayed_event() {
    let ev = event("element-call-0.26.1/session_leave_from_delayed_event.json");
    assert_eq!(
        membership::parse(&ev),
        MembershipUpdate::Left(MembershipSlot::State(
            "_@ecalice1795633693:localhost_ECALICE1795633693EC_m.call".into()
        ))
    );
    // The delayed leave Element Call schedules is `{}` in the same state key.
    let delayed = fixture("element-call-0.26.1/session_delayed_leave.json");
    assert_eq!(delayed["content"], json!({}));
    assert_eq!(delayed["state_key"], ev.state_key.clone().unwrap().as_str());
}

#[test]
fn element_call_sticky_join_and_leave() {
    let join = event("element-call-0.26.1/sticky_join_sync_event.json");
    let MembershipUpdate::Joined(list) = membership::parse(&join) else { panic!("not a join") };
    let m = &list[0];
    assert_eq!(m.dialect, Dialect::Sticky);
    assert_eq!(m.member_id, "3da9bf6c-7870-4798-bffc-dae86966774e");
    assert_eq!(m.transports[0].livekit_service_url(), Some("http://127.0.0.1:38915"));
    assert_eq!(
        m.livekit_identity,
        matrixrtc_identity::hashed_identity(
            "@ecsticky1795633777:localhost",
            "STICKYEC",
            "3da9bf6c-7870-4798-bffc-dae86966774e"
        )
    );
    // Sticky for the TTL the server reported when the event was read.
    assert_eq!(m.expires_at, join.sticky_ttl.unwrap().1 + 3_583_539);

    let leave = event("element-call-0.26.1/sticky_leave_event.json");
    assert_eq!(
        membership::parse(&leave),
        MembershipUpdate::Left(MembershipSlot::Sticky {
            sender: "@ecsticky1795633777:localhost".into(),
            sticky_key: "3da9bf6c-7870-4798-bffc-dae86966774e".into()
        })
    );
}

#[test]
fn memberships_array_is_read() {
    let ev = event("constructed/memberships_array_2024.json");
    let MembershipUpdate::Joined(list) = membership::parse(&ev) else { panic!("not a join") };
    assert_eq!(list[0].dialect, Dialect::MembershipsArray);
    assert_eq!(list[0].expires_at, 1_730_000_000_000);
    // Never connected to: no transport in the call state.
    let mut session = CallSession::new();
    session.set_room_membership("@carol:example.org", true);
    session.handle_event(&ev);
    let state = session.state(1_729_996_500_000);
    assert!(state.is_active());
    assert_eq!(state.members[0].transport, None);
    assert!(state.service_urls.is_empty());
}

/// What we send has Element Call's shape (ignoring ids and timestamps), plus what ruma requires.
#[test]
fn our_session_content_has_element_calls_shape() {
    let captured = fixture("element-call-0.26.1/session_join_state_event.json");
    let ec = &captured["content"];
    let ours = SessionMembershipContent::new(
        "@ecalice1795633693:localhost",
        "ECALICE1795633693EC",
        captured["room_id"].as_str().unwrap(),
        "http://127.0.0.1:38915",
    )
    .to_json();
    assert_eq!(&ours, ec);
}

#[test]
fn our_sticky_content_has_element_calls_shape() {
    let captured = fixture("element-call-0.26.1/sticky_join_sync_event.json");
    let ours = StickyMembershipContent::new(
        "@ecsticky1795633777:localhost",
        "STICKYEC",
        "3da9bf6c-7870-4798-bffc-dae86966774e",
        "http://127.0.0.1:38915",
    );
    assert_eq!(ours.to_json(), captured["content"]);
    let leave = fixture("element-call-0.26.1/sticky_leave_event.json");
    assert_eq!(ours.leave_json(), leave["content"]);
}

#[test]
fn invalid_session_contents_are_leaves() {
    let base = fixture("element-call-0.26.1/session_join_state_event.json");
    let breakages: Vec<(&str, Value)> = vec![
        ("application", json!(5)),
        ("device_id", Value::Null),
        ("call_id", json!([])),
        ("focus_active", json!("livekit")),
        ("foci_preferred", json!({"type": "livekit"})),
        ("expires", json!("soon")),
        ("created_ts", json!(-1)),
        ("scope", json!(1)),
    ];
    for (key, value) in breakages {
        let mut json = base.clone();
        if value.is_null() {
            json["content"].as_object_mut().unwrap().remove(key);
        } else {
            json["content"][key] = value;
        }
        let ev = MembershipEvent::from_json(&json, 0).unwrap();
        assert!(matches!(membership::parse(&ev), MembershipUpdate::Left(_)), "{key}");
    }
}

#[test]
fn sticky_member_must_be_the_sender() {
    let mut json = fixture("element-call-0.26.1/sticky_join_sync_event.json");
    json["sender"] = json!("@mallory:localhost");
    let ev = MembershipEvent::from_json(&json, 0).unwrap();
    assert!(matches!(membership::parse(&ev), MembershipUpdate::Left(_)));
}

#[test]
fn older_sticky_shape_with_rtc_transports_is_read() {
    let mut json = fixture("element-call-0.26.1/sticky_join_sync_event.json");
    let content = json["content"].as_object_mut().unwrap();
    content.remove("transports");
    content.insert(
        "rtc_transports".into(),
        json!([{"type": "livekit", "livekit_service_url": "https://a"}]),
    );
    let ev = MembershipEvent::from_json(&json, 0).unwrap();
    let MembershipUpdate::Joined(list) = membership::parse(&ev) else { panic!() };
    assert_eq!(list[0].transports[0].livekit_service_url(), Some("https://a"));
}

mod generated {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            prop_oneof![
                Just("m.call".to_owned()),
                Just("".to_owned()),
                Just("livekit".to_owned()),
                Just("multi_sfu".to_owned()),
                Just("oldest_membership".to_owned()),
                Just("m.call#ROOM".to_owned()),
                Just("@a:x".to_owned()),
                ".*"
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let keys = prop_oneof![
                Just("application".to_owned()),
                Just("call_id".to_owned()),
                Just("device_id".to_owned()),
                Just("focus_active".to_owned()),
                Just("foci_preferred".to_owned()),
                Just("type".to_owned()),
                Just("expires".to_owned()),
                Just("created_ts".to_owned()),
                Just("memberships".to_owned()),
                Just("member".to_owned()),
                Just("user_id".to_owned()),
                Just("id".to_owned()),
                Just("slot_id".to_owned()),
                Just("transports".to_owned()),
                Just("published".to_owned()),
                Just("versions".to_owned()),
                Just("msc4354_sticky_key".to_owned()),
                Just("sticky_key".to_owned()),
                Just("livekit_service_url".to_owned()),
                Just("expires_ts".to_owned()),
                ".*"
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary content in any membership event type never panics, and whatever parses as a
        /// join has the fields a connection needs.
        #[test]
        fn arbitrary_content_never_panics(content in arb_json(), sticky in any::<bool>(), ts in any::<u64>(), now in any::<u64>()) {
            let event_type = if sticky { "org.matrix.msc4143.rtc.member" } else { "org.matrix.msc3401.call.member" };
            let json = serde_json::json!({
                "type": event_type, "state_key": "_@a:x_D_m.call", "sender": "@a:x", "origin_server_ts": ts,
                "content": content, "msc4354_sticky": {"duration_ms": 3_600_000},
            });
            let ev = MembershipEvent::from_json(&json, now).unwrap();
            if let MembershipUpdate::Joined(list) = membership::parse(&ev) {
                for m in list {
                    // A join is always the sender's, on a device it names.
                    prop_assert_eq!(m.user_id.as_str(), "@a:x");
                    prop_assert!(!m.device_id.is_empty(), "{:?} joined without a device", m.dialect);
                    prop_assert!(!m.livekit_identity.is_empty());
                }
            }
            let mut session = CallSession::new();
            session.set_room_membership("@a:x", true);
            session.handle_event(&ev);
            let _ = session.state(now);
        }

        /// Arbitrary whole events (not just contents) never panic the edge either.
        #[test]
        fn arbitrary_events_never_panic(event in arb_json(), now in any::<u64>()) {
            if let Some(ev) = MembershipEvent::from_json(&event, now) {
                let _ = membership::parse(&ev);
            }
        }
    }
}
