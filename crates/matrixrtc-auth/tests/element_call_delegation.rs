//! Element Call 0.26 delegating its delayed leave to the authorization service, on the local
//! stack (Synapse, LiveKit with its webhook to the service, Element Call in Chromium).
//!
//! Element Call probes `/delegate_delayed_leave`, finds it, switches to its "delegated" timings
//! and hands its delayed leave over through `/sfu/get`. Here those timings are short and its own
//! restarts are blocked in the browser, so only the service can keep the member in the call:
//!
//! 1. while Element Call's LiveKit connection lives, the same delayed leave is restarted by the
//!    service again and again and the membership stays, far past the delay;
//! 2. when the browser is killed (no hang-up, no leave), the leave is sent within seconds of
//!    LiveKit losing the connection, long before the homeserver's own timer would have.
//!
//! Needs `cargo xtask devstack up` (or run everything with `cargo xtask test`).

mod common;

use std::time::{Duration, Instant};

use common::call_room;
use rtc_test_support::{ElementCall, Homeserver, Login, User, encode_path_segment};
use serde_json::json;

const MEMBER_EVENT: &str = "org.matrix.msc3401.call.member";

/// Whether `user` has a non-empty call membership in `room_id` (any of its state keys).
async fn is_member(hs: &Homeserver, user: &User, room_id: &str) -> bool {
    let path = format!("/_matrix/client/v3/rooms/{}/state", encode_path_segment(room_id));
    let state = hs.get(user, &path).await.expect("the room state");
    state.as_array().expect("a list of state events").iter().any(|event| {
        event["type"] == MEMBER_EVENT
            && event["sender"] == user.user_id.as_str()
            && event["content"].as_object().is_some_and(|content| !content.is_empty())
    })
}

/// The delayed call-membership events `user` has scheduled: `(delay_id, running_since)`.
async fn delayed_leaves(hs: &Homeserver, user: &User) -> Vec<(String, i64)> {
    let list = hs
        .get(user, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events")
        .await
        .expect("the user's delayed events");
    list["delayed_events"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|event| event["type"] == MEMBER_EVENT)
        .map(|event| {
            (
                event["delay_id"].as_str().unwrap_or_default().to_owned(),
                event["running_since"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Element Call's config with short delegated timings and (practically) no restarts of its own.
/// `end` is how the run ends: `HANGUP` or `CRASH`.
fn settings(delay_ms: u64, stay_seconds: u64, end: &'static str) -> Vec<(&'static str, String)> {
    let config = json!({"matrix_rtc_session": {"delegated_delayed_leave": {
        "delay_ms": delay_ms, "restart_ms": 3_600_000,
    }}});
    vec![
        ("EC_CONFIG", config.to_string()),
        ("BLOCK_DELAYED_RESTARTS", "1".into()),
        ("STAY_SECONDS", stay_seconds.to_string()),
        (end, "1".into()),
    ]
}

#[tokio::test]
async fn element_call_is_kept_in_the_call_by_the_service_while_its_media_lives() {
    let call = call_room().await;
    let (hs, room_id) = (&call.hs, call.room_id.as_str());

    // 1. Alive: a 10 s delay that only the service restarts, watched for 40 s.
    let delay = Duration::from_secs(10);
    let mut ec = ElementCall::start(
        &call.stack,
        Login::Session(&call.alice),
        room_id,
        &settings(delay.as_millis() as u64, 50, "HANGUP"),
    )
    .expect("Element Call starts");
    ec.wait("config-patched", None, Duration::from_secs(60))
        .await
        .expect("the config is laid over");
    ec.wait("in-call", None, Duration::from_secs(90)).await.expect("Element Call joins");
    ec.wait("restart-blocked", None, Duration::from_secs(20))
        .await
        .expect("Element Call's own restart is blocked");

    let watched = Instant::now();
    let mut delay_ids = Vec::new();
    let mut restarts = Vec::<i64>::new();
    while watched.elapsed() < Duration::from_secs(40) {
        assert!(
            is_member(hs, &call.alice, room_id).await,
            "Element Call's membership is gone after {:?}: its delayed leave fired",
            watched.elapsed()
        );
        for (delay_id, running_since) in delayed_leaves(hs, &call.alice).await {
            if !delay_ids.contains(&delay_id) {
                delay_ids.push(delay_id);
            }
            if restarts.last() != Some(&running_since) {
                restarts.push(running_since);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(delay_ids.len(), 1, "one delayed leave all along (a new one means the old fired)");
    // Scheduled by Element Call, restarted by the service as it took over, then about every
    // 8 s (80 % of the delay) for 40 s.
    assert!(restarts.len() >= 5, "running_since values seen: {restarts:?}");
    for pair in restarts[1..].windows(2) {
        let gap = pair[1] - pair[0];
        assert!((6_000..=9_500).contains(&gap), "restarts {gap} ms apart: {restarts:?}");
    }
    let (status, _) = ec.finish(Duration::from_secs(60)).await.expect("Element Call ends");
    assert!(status.success(), "Element Call failed");
    assert!(!is_member(hs, &call.alice, room_id).await, "the hang-up removed the membership");

    // 2. Killed: a 2-minute delay, and the browser killed; the service sends the leave as
    // soon as LiveKit reports the connection gone.
    let mut ec = ElementCall::start(
        &call.stack,
        Login::Session(&call.bob),
        room_id,
        &settings(120_000, 10, "CRASH"),
    )
    .expect("Element Call starts");
    ec.wait("in-call", None, Duration::from_secs(90)).await.expect("Element Call joins");
    // Element Call schedules its delayed leave, then sends its membership.
    let joined = Instant::now();
    while delayed_leaves(hs, &call.bob).await.is_empty() || !is_member(hs, &call.bob, room_id).await
    {
        assert!(joined.elapsed() < Duration::from_secs(15), "no membership with a delayed leave");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ec.wait("crashed", None, Duration::from_secs(30)).await.expect("the browser is killed");
    let killed = Instant::now();
    while is_member(hs, &call.bob, room_id).await {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the membership of a killed Element Call is still there after 60 s (its delay is 120 s)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("the leave of the killed Element Call came {:?} after the kill", killed.elapsed());
    assert!(delayed_leaves(hs, &call.bob).await.is_empty(), "the delayed leave was sent");
}
