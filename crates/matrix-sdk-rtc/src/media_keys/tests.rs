//! The key exchange's rules, step by step, without a network.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::content::{self, MediaKey};
use super::*;
use crate::membership::{Dialect, Membership, MembershipSlot};

const ROOM: &str = "!call:example.org";

fn own() -> OwnMember {
    OwnMember {
        user_id: "@bot:example.org".into(),
        device_id: "BOT".into(),
        member_id: "bot-member".into(),
        livekit_identity: "@bot:example.org:BOT".into(),
    }
}

fn member(user: &str, device: &str, created_ts: u64) -> Membership {
    Membership {
        dialect: Dialect::Session,
        user_id: user.into(),
        device_id: device.into(),
        member_id: format!("{user}:{device}"),
        application: "m.call".into(),
        slot_id: "m.call#ROOM".into(),
        scope: Some("m.room".into()),
        call_intent: None,
        created_ts,
        expires_at: u64::MAX,
        focus_selection: None,
        transports: Vec::new(),
        livekit_identity: format!("{user}:{device}"),
        event_id: None,
        slot: MembershipSlot::State(format!("_{user}_{device}_m.call")),
    }
}

/// An exchange whose keys are 1, 2, 3, ... in every byte.
fn exchange() -> MediaKeysCore {
    let mut next = 0u8;
    MediaKeysCore::with_sources(
        own(),
        ROOM,
        move || {
            next = next.wrapping_add(1);
            Some(MediaKey([next; KEY_LEN]))
        },
        || 1_755_000_000_000,
    )
}

fn outputs(core: &mut MediaKeysCore) -> Vec<KeyOutput> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

/// (devices, index, key byte) of each Send.
fn sends(outputs: &[KeyOutput]) -> Vec<(Vec<String>, u8, u8)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            KeyOutput::Send { devices, index, content } => {
                let read = content::parse(content, ROOM).expect("what we send parses");
                assert_eq!(read.index, *index);
                Some((devices.iter().map(|d| d.device_id.clone()).collect(), *index, read.key.0[0]))
            }
            KeyOutput::SetKey { .. } => None,
        })
        .collect()
}

/// (identity, index, key byte) of each SetKey.
fn set_keys(outputs: &[KeyOutput]) -> Vec<(String, u8, u8)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            KeyOutput::SetKey { identity, index, key } => {
                Some((identity.clone(), *index, key.0[0]))
            }
            KeyOutput::Send { .. } => None,
        })
        .collect()
}

fn bot() -> Membership {
    member("@bot:example.org", "BOT", 1)
}

#[test]
fn the_first_key_is_used_at_once_and_sent_to_everybody_but_us() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1), member("@b:x", "B", 1)]);
    let out = outputs(&mut core);
    assert_eq!(set_keys(&out), [("@bot:example.org:BOT".to_owned(), 0, 1)]);
    let mut sent = sends(&out);
    sent[0].0.sort();
    assert_eq!(sent, [(vec!["A".to_owned(), "B".to_owned()], 0, 1)]);
    assert_eq!(core.next_timeout(), None);
}

#[test]
fn a_joiner_within_the_grace_period_gets_the_current_key_later_ones_a_rotation() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1)]);
    outputs(&mut core);
    let soon = now + ROTATION_GRACE - Duration::from_millis(1);
    core.members_changed(soon, &[bot(), member("@a:x", "A", 1), member("@b:x", "B", 5)]);
    let out = outputs(&mut core);
    assert_eq!(sends(&out), [(vec!["B".to_owned()], 0, 1)], "only the joiner, the same key");
    assert!(set_keys(&out).is_empty());

    let late = now + ROTATION_GRACE;
    let three = [bot(), member("@a:x", "A", 1), member("@b:x", "B", 5), member("@c:x", "C", 9)];
    core.members_changed(late, &three);
    let out = outputs(&mut core);
    let mut sent = sends(&out);
    sent[0].0.sort();
    assert_eq!(sent, [(vec!["A".to_owned(), "B".to_owned(), "C".to_owned()], 1, 2)]);
    assert!(set_keys(&out).is_empty(), "not used before the others have it");
    assert_eq!(core.next_timeout(), None, "the delay starts once the send went out");
    let sent = late + Duration::from_millis(1500);
    core.key_sent(sent, 1, SendOutcome::Sent);
    assert_eq!(core.next_timeout(), Some(sent + USE_KEY_DELAY));
    core.handle_timeout(sent + USE_KEY_DELAY - Duration::from_millis(1));
    assert!(outputs(&mut core).is_empty());
    core.handle_timeout(sent + USE_KEY_DELAY);
    assert_eq!(set_keys(&outputs(&mut core)), [("@bot:example.org:BOT".to_owned(), 1, 2)]);
}

#[test]
fn a_rotated_key_that_did_not_go_out_is_not_used_and_is_sent_again_less_and_less_often() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1), member("@b:x", "B", 1)]);
    outputs(&mut core);
    core.key_sent(now, 0, SendOutcome::Sent);
    core.members_changed(now, &[bot(), member("@a:x", "A", 1)]);
    assert_eq!(sends(&outputs(&mut core)), [(vec!["A".to_owned()], 1, 2)]);

    let mut at = now;
    let mut waits = Vec::new();
    for _ in 0..7 {
        core.key_sent(at, 1, SendOutcome::Failed);
        let due = core.next_timeout().expect("a retry");
        waits.push(due - at);
        core.handle_timeout(due - Duration::from_millis(1));
        assert!(outputs(&mut core).is_empty(), "not before it is due");
        core.handle_timeout(due);
        let out = outputs(&mut core);
        assert!(set_keys(&out).is_empty(), "never used while nobody has it");
        assert_eq!(sends(&out), [(vec!["A".to_owned()], 1, 2)], "the same key to everybody");
        at = due;
    }
    let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);

    core.key_sent(at, 1, SendOutcome::Sent);
    assert_eq!(core.next_timeout(), Some(at + USE_KEY_DELAY), "no retry after a success");
    core.handle_timeout(at + USE_KEY_DELAY);
    assert_eq!(set_keys(&outputs(&mut core)), [("@bot:example.org:BOT".to_owned(), 1, 2)]);
    assert_eq!(core.next_timeout(), None);
}

#[test]
fn a_key_replaced_while_it_was_sent_is_never_used() {
    let mut core = exchange();
    let now = Instant::now();
    let three = [bot(), member("@a:x", "A", 1), member("@b:x", "B", 1), member("@c:x", "C", 1)];
    core.members_changed(now, &three);
    outputs(&mut core);
    core.members_changed(now, &three[..3]);
    core.members_changed(now, &three[..2]);
    let sent: Vec<u8> = sends(&outputs(&mut core)).iter().map(|s| s.1).collect();
    assert_eq!(sent, [1, 2]);
    core.key_sent(now, 1, SendOutcome::Sent);
    assert_eq!(core.next_timeout(), None, "key 1 is no longer ours to use");
    core.key_sent(now, 1, SendOutcome::Failed);
    assert_eq!(core.next_timeout(), None, "nor to send again");
    core.key_sent(now, 2, SendOutcome::Sent);
    core.handle_timeout(now + USE_KEY_DELAY);
    assert_eq!(set_keys(&outputs(&mut core)), [("@bot:example.org:BOT".to_owned(), 2, 3)]);
}

#[test]
fn when_the_last_member_leaves_the_new_key_is_used_at_once() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1)]);
    outputs(&mut core);
    core.key_sent(now, 0, SendOutcome::Sent);
    core.members_changed(now, &[bot()]);
    assert!(sends(&outputs(&mut core)).is_empty());
    core.handle_timeout(now);
    assert_eq!(set_keys(&outputs(&mut core)), [("@bot:example.org:BOT".to_owned(), 1, 2)]);
    // A joiner within the grace period gets the key we encrypt with.
    core.members_changed(now, &[bot(), member("@b:x", "B", 1)]);
    assert_eq!(sends(&outputs(&mut core)), [(vec!["B".to_owned()], 1, 2)]);
}

#[test]
fn a_leave_rotates_the_key_for_those_who_stay() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1), member("@b:x", "B", 1)]);
    outputs(&mut core);
    core.members_changed(now, &[bot(), member("@a:x", "A", 1)]);
    let out = outputs(&mut core);
    assert_eq!(sends(&out), [(vec!["A".to_owned()], 1, 2)]);
    // A re-join (a new created_ts) is a leave and a join.
    core.members_changed(now, &[bot(), member("@a:x", "A", 2)]);
    assert_eq!(sends(&outputs(&mut core)), [(vec!["A".to_owned()], 2, 3)]);
    // Nothing changed: nothing to do.
    core.members_changed(now, &[bot(), member("@a:x", "A", 2)]);
    assert!(outputs(&mut core).is_empty());
}

#[test]
fn the_index_wraps_at_256() {
    let mut core = exchange();
    let now = Instant::now();
    let mut members = vec![bot()];
    core.members_changed(now, &members);
    // Round 1 hands A the first key; each later one is a re-join, so a rotation.
    for round in 1..=257u64 {
        members = vec![bot(), member("@a:x", "A", round)];
        core.members_changed(now, &members);
    }
    let out = outputs(&mut core);
    assert_eq!(sends(&out).last().map(|s| s.1), Some(0), "index 255 is followed by 0");
}

fn key_message(device: &str, index: u64, key: &str) -> Value {
    json!({
        "keys": {"index": index, "key": key},
        "member": {"id": "m", "claimed_device_id": device},
        "room_id": ROOM,
        "session": {"application": "m.call", "call_id": "", "scope": "m.room"},
        "sent_ts": 0,
    })
}

const KEY_B64: &str = "BwcHBwcHBwcHBwcHBwcHBw==";

#[test]
fn a_members_key_is_bound_to_its_livekit_identity() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1)]);
    outputs(&mut core);
    core.key_received(now, "@a:x", Some("A"), true, &key_message("A", 4, KEY_B64)).unwrap();
    assert_eq!(set_keys(&outputs(&mut core)), [("@a:x:A".to_owned(), 4, 7)]);
}

#[test]
fn a_key_before_its_membership_is_held_until_it_appears() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot()]);
    outputs(&mut core);
    core.key_received(now, "@a:x", None, true, &key_message("A", 0, KEY_B64)).unwrap();
    assert!(set_keys(&outputs(&mut core)).is_empty(), "no membership yet");
    core.members_changed(now + Duration::from_secs(1), &[bot(), member("@a:x", "A", 1)]);
    let out = outputs(&mut core);
    assert_eq!(set_keys(&out), [("@a:x:A".to_owned(), 0, 7)]);
    assert_eq!(sends(&out), [(vec!["A".to_owned()], 0, 1)], "and the joiner gets ours");
}

#[test]
fn held_keys_expire() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot()]);
    core.key_received(now, "@a:x", None, true, &key_message("A", 0, KEY_B64)).unwrap();
    let expiry = core.next_timeout().expect("a held key expires");
    core.handle_timeout(expiry);
    core.members_changed(expiry, &[bot(), member("@a:x", "A", 1)]);
    assert!(set_keys(&outputs(&mut core)).iter().all(|(id, _, _)| id != "@a:x:A"));
}

#[test]
fn bad_keys_are_refused_and_change_nothing() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1)]);
    outputs(&mut core);
    let good = key_message("A", 1, KEY_B64);
    let cases = [
        (core.key_received(now, "@a:x", Some("A"), false, &good), KeyRejection::NotEncrypted),
        (core.key_received(now, "@a:x", Some("EVIL"), true, &good), KeyRejection::DeviceMismatch),
        (
            core.key_received(now, "@bot:example.org", None, true, &key_message("BOT", 1, KEY_B64)),
            KeyRejection::Own,
        ),
        (
            core.key_received(now, "@a:x", None, true, &{
                let mut other = good.clone();
                other["room_id"] = json!("!other:x");
                other
            }),
            KeyRejection::OtherRoom,
        ),
        (
            core.key_received(now, "@a:x", None, true, &key_message("A", 1, "AAAA")),
            KeyRejection::Malformed("keys.key"),
        ),
    ];
    for (result, expected) in cases {
        assert_eq!(result, Err(expected));
    }
    assert!(outputs(&mut core).is_empty());
}

#[test]
fn a_reconnected_participant_gets_our_key_again() {
    let mut core = exchange();
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1), member("@b:x", "B", 1)]);
    outputs(&mut core);
    core.participant_connected("@b:x:B");
    assert_eq!(sends(&outputs(&mut core)), [(vec!["B".to_owned()], 0, 1)]);
    core.participant_connected("@stranger:x:S");
    assert!(outputs(&mut core).is_empty());
}

#[test]
fn debug_output_shows_no_key() {
    let mut core = exchange();
    core.members_changed(Instant::now(), &[bot(), member("@a:x", "A", 1)]);
    let shown = format!("{core:?} {:?}", outputs(&mut core));
    assert!(!shown.contains(KEY_B64) && !shown.contains("[1, 1, 1"), "{shown}");
}

#[test]
fn keys_are_resent_at_the_interval_when_asked() {
    let every = Duration::from_secs(5);
    let mut core = exchange().with_resend_interval(Some(every));
    let now = Instant::now();
    core.members_changed(now, &[bot(), member("@a:x", "A", 1)]);
    outputs(&mut core);
    let first = core.next_timeout().expect("the resend timer");
    core.handle_timeout(first);
    assert!(outputs(&mut core).is_empty(), "the timer starts");
    let due = core.next_timeout().expect("the next resend");
    assert_eq!(due, first + every);
    core.handle_timeout(due);
    assert_eq!(sends(&outputs(&mut core)), [(vec!["A".to_owned()], 0, 1)]);
    let mut quiet = exchange().with_resend_interval(Some(Duration::ZERO));
    quiet.members_changed(now, &[bot(), member("@a:x", "A", 1)]);
    assert_eq!(quiet.next_timeout(), None, "zero means never");
}
