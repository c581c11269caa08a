//! MatrixRTC calls between real matrix-sdk clients on the local stack (Synapse with delayed
//! events, our authorization service). Needs `cargo xtask devstack up` (or `cargo xtask test`).
#![recursion_limit = "256"]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Peer;
use matrix_sdk::Room;
use matrix_sdk::config::SyncSettings;
use matrix_sdk_rtc::membership::Dialect;
use matrix_sdk_rtc::{
    ConnectRequest, DriverOptions, DriverStatus, JoinOptions, LiveKitConnection, LiveKitConnector,
    LiveKitRoomDriver, MembershipStatus, MembershipTimings, OwnMembership, Presence,
    RoomCallObserver, RtcError, TransportSource, discover_transports, livekit_service_url,
};
use rtc_test_support::{Homeserver, StackInfo, encode_path_segment};
use serde_json::{Value, json};

/// `peer` joins the call of `room_id` through the stack's authorization service.
async fn join(peer: &Peer, room_id: &str, stack: &StackInfo) -> OwnMembership {
    OwnMembership::join(&peer.room(room_id), &stack.auth_service_url, MembershipTimings::default())
        .await
        .unwrap()
}

/// Two clients in a call room, both syncing.
async fn two_peers() -> (StackInfo, Homeserver, Peer, Peer, String) {
    let stack = StackInfo::require();
    let hs = Homeserver::new(&stack);
    let a = Peer::new(&stack, &hs, "alice", "ALICEDEV").await;
    let b = Peer::new(&stack, &hs, "bob", "BOBDEV").await;
    let room_id = hs.create_call_room(&a.user, &[&b.user]).await.unwrap();
    hs.join(&b.user, &room_id).await.unwrap();
    for p in [&a, &b] {
        p.client.sync_once(SyncSettings::default()).await.unwrap();
        let client = p.client.clone();
        tokio::spawn(async move { client.sync(SyncSettings::default()).await });
    }
    (stack, hs, a, b, room_id)
}

#[tokio::test]
async fn transports_are_discovered_from_the_homeserver() {
    let (stack, _, a, _, _) = two_peers().await;
    let found = discover_transports(&a.client, None).await.unwrap();
    assert_eq!(found.source, TransportSource::RtcTransportsEndpoint);
    assert_eq!(found.transports[0].livekit_service_url(), Some(stack.auth_service_url.as_str()));
    assert_eq!(livekit_service_url(&a.client).await.unwrap(), stack.auth_service_url);
    let overridden = discover_transports(&a.client, Some("https://other.example")).await.unwrap();
    assert_eq!(overridden.source, TransportSource::Override);
}

#[tokio::test]
async fn a_join_and_a_leave_are_seen_by_the_other_client() {
    let (stack, _, a, b, room_id) = two_peers().await;
    let observer = RoomCallObserver::new(&b.room(&room_id)).await.unwrap();
    assert!(!observer.state().is_active());

    let started = Instant::now();
    let membership = join(&a, &room_id, &stack).await;
    let state = observer
        .wait_for(Duration::from_secs(10), |s| s.member(&a.user.user_id, "ALICEDEV").is_some())
        .await
        .expect("B sees A join");
    eprintln!("B saw A join after {:?}", started.elapsed());
    let member = state.member(&a.user.user_id, "ALICEDEV").unwrap();
    assert_eq!(member.livekit_identity(), format!("{}:ALICEDEV", a.user.user_id));
    assert_eq!(
        member.transport.as_ref().unwrap().livekit_service_url(),
        Some(stack.auth_service_url.as_str())
    );
    assert_eq!(state.service_urls, std::slice::from_ref(&stack.auth_service_url));
    assert_eq!(*membership.status().borrow(), MembershipStatus::Joined);

    let started = Instant::now();
    membership.leave().await.unwrap();
    observer.wait_for(Duration::from_secs(10), |s| !s.is_active()).await.expect("B sees A leave");
    eprintln!("B saw A leave after {:?}", started.elapsed());
}

/// A member process killed with SIGKILL disappears from the call by itself: the homeserver sends
/// its delayed leave.
#[tokio::test]
async fn a_killed_member_leaves_no_ghost() {
    let (stack, _, a, b, room_id) = two_peers().await;
    let observer = RoomCallObserver::new(&b.room(&room_id)).await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_matrixrtc-join-call"))
        .env("HOMESERVER_URL", &stack.homeserver_url)
        .env("MATRIX_USERNAME", &a.password)
        .env("MATRIX_PASSWORD", &a.password)
        .env("MATRIX_DEVICE_ID", "GHOSTDEV")
        .env("ROOM_ID", &room_id)
        .env("RUST_LOG", "matrix_sdk_rtc=info,warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let joined = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(60), joined)
        .await
        .expect("the child joins in time")
        .unwrap()
        .unwrap();
    assert_eq!(line.trim(), "joined");
    observer
        .wait_for(Duration::from_secs(10), |s| s.member(&a.user.user_id, "GHOSTDEV").is_some())
        .await
        .unwrap();

    child.kill().unwrap(); // SIGKILL: no chance to leave.
    let killed = Instant::now();
    child.wait().unwrap();
    observer
        .wait_for(Duration::from_secs(15), |s| s.member(&a.user.user_id, "GHOSTDEV").is_none())
        .await
        .expect("the killed member is gone within 15 s");
    eprintln!(
        "GHOST TEST: the killed member left the call {:.1} s after SIGKILL",
        killed.elapsed().as_secs_f64()
    );
}

/// The membership we send has Element Call 0.26.1's shape: same keys, same values but for ids.
#[tokio::test]
async fn our_membership_has_element_calls_shape_on_the_wire() {
    let (stack, hs, a, b, room_id) = two_peers().await;
    let membership = join(&a, &room_id, &stack).await;
    membership.wait_joined(Duration::from_secs(10)).await.unwrap();
    let key = membership.state_key().to_owned();
    assert_eq!(key, format!("_{}_ALICEDEV_m.call", a.user.user_id));

    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/org.matrix.msc3401.call.member/{}",
        encode_path_segment(&room_id),
        encode_path_segment(&key)
    );
    let ours = hs.get(&b.user, &path).await.unwrap();
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/element-call-0.26.1/session_join_state_event.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut theirs = fixture["content"].clone();
    theirs["device_id"] = json!("ALICEDEV");
    theirs["membershipID"] = json!(format!("{}:ALICEDEV", a.user.user_id));
    theirs["foci_preferred"][0]["livekit_alias"] = json!(room_id);
    theirs["foci_preferred"][0]["livekit_service_url"] = json!(stack.auth_service_url);
    assert_eq!(ours, theirs);

    // The delayed leave is armed, 10 s, `{}` in the same state key.
    let delayed = hs
        .get(&a.user, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events")
        .await
        .unwrap();
    let ours: Vec<&Value> = delayed["delayed_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state_key"] == key.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{delayed}");
    assert_eq!(ours[0]["content"], json!({}));
    assert_eq!(ours[0]["delay"], 10_000);
    membership.leave().await.unwrap();
}

/// A membership and a delayed leave left by an earlier run of this device are cleared on start.
#[tokio::test]
async fn leftovers_of_an_earlier_run_are_cleared() {
    let (stack, hs, a, _, room_id) = two_peers().await;
    let key = format!("_{}_ALICEDEV_m.call", a.user.user_id);
    let http = reqwest::Client::new();
    let base = format!(
        "{}/_matrix/client/v3/rooms/{}/state/org.matrix.msc3401.call.member/{}",
        stack.homeserver_url,
        encode_path_segment(&room_id),
        encode_path_segment(&key)
    );
    let stale = http
        .put(format!("{base}?org.matrix.msc4140.delay=600000"))
        .bearer_auth(&a.user.access_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    let stale_id = stale.json::<Value>().await.unwrap()["delay_id"]
        .as_str()
        .expect("the homeserver scheduled the stale delayed leave")
        .to_owned();
    assert!(!stale_id.is_empty());

    let membership = join(&a, &room_id, &stack).await;
    membership.wait_joined(Duration::from_secs(10)).await.unwrap();
    let delayed = hs
        .get(&a.user, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events")
        .await
        .unwrap();
    let ids: Vec<&str> = delayed["delayed_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["delay_id"].as_str())
        .collect();
    assert!(!ids.contains(&stale_id.as_str()), "the stale delayed leave was cancelled: {delayed}");
    assert_eq!(ids.len(), 1, "only our own delayed leave is left: {delayed}");
    membership.leave().await.unwrap();
}

/// The opt-in sticky dialect: seen by the other client with the hashed LiveKit identity, and
/// never together with a state membership.
#[tokio::test]
async fn a_sticky_membership_is_seen_and_leaves() {
    let (stack, hs, a, b, room_id) = two_peers().await;
    let observer = RoomCallObserver::new(&b.room(&room_id)).await.unwrap();
    let mut options = JoinOptions::new(&stack.auth_service_url);
    options.sticky = true;
    let membership = OwnMembership::join_with(&a.room(&room_id), options).await.unwrap();
    let state = observer
        .wait_for(Duration::from_secs(10), |s| s.member(&a.user.user_id, "ALICEDEV").is_some())
        .await
        .expect("B sees A's sticky membership");
    let member = state.member(&a.user.user_id, "ALICEDEV").unwrap();
    assert_eq!(member.membership.dialect, Dialect::Sticky);
    assert_eq!(
        member.livekit_identity(),
        matrixrtc_identity::hashed_identity(
            &a.user.user_id,
            "ALICEDEV",
            &member.membership.member_id
        )
    );
    assert_eq!(
        member.transport.as_ref().unwrap().livekit_service_url(),
        Some(stack.auth_service_url.as_str())
    );
    // No state membership next to it.
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/org.matrix.msc3401.call.member/{}",
        encode_path_segment(&room_id),
        encode_path_segment(&format!("_{}_ALICEDEV_m.call", a.user.user_id))
    );
    match hs.get(&b.user, &path).await {
        Err(rtc_test_support::Error::Status { status: 404, body, .. }) => {
            assert!(body.contains("M_NOT_FOUND"), "{body}");
        }
        other => panic!("no state membership was sent, expected 404 M_NOT_FOUND: {other:?}"),
    }

    membership.leave().await.unwrap();
    observer
        .wait_for(Duration::from_secs(10), |s| !s.is_active())
        .await
        .expect("B sees A's sticky leave");
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Recorded {
    Connect(String),
    Disconnect,
}

/// Records connects and disconnects. `fail` makes the next connects fail; a connection ends by
/// itself when `lose` is notified.
#[derive(Clone, Default)]
struct RecordingConnector {
    log: Arc<Mutex<Vec<Recorded>>>,
    fail: Arc<Mutex<u32>>,
    lose: Arc<tokio::sync::Notify>,
    member_ids: Arc<Mutex<Vec<Option<String>>>>,
    /// The (user, device) of every call member, as the driver saw the call at each connect.
    calls: Arc<Mutex<Vec<Vec<Device>>>>,
}

/// A call member's (user, device).
type Device = (String, String);

struct RecordingConnection {
    log: Arc<Mutex<Vec<Recorded>>>,
    lose: Arc<tokio::sync::Notify>,
}

impl LiveKitConnection for RecordingConnection {
    async fn disconnect(self) -> Result<(), RtcError> {
        self.log.lock().unwrap().push(Recorded::Disconnect);
        Ok(())
    }

    async fn closed(&mut self) -> RtcError {
        self.lose.notified().await;
        RtcError::connector("the test closed the connection")
    }
}

impl LiveKitConnector for RecordingConnector {
    type Connection = RecordingConnection;

    async fn connect(&self, request: ConnectRequest<'_>) -> Result<RecordingConnection, RtcError> {
        self.log.lock().unwrap().push(Recorded::Connect(request.service_url.to_owned()));
        self.member_ids.lock().unwrap().push(request.member_id.map(str::to_owned));
        let members = request
            .call
            .borrow()
            .members
            .iter()
            .map(|m| (m.user_id().to_owned(), m.device_id().to_owned()))
            .collect();
        self.calls.lock().unwrap().push(members);
        {
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(RtcError::connector("the test refused the connection"));
            }
        }
        Ok(RecordingConnection { log: self.log.clone(), lose: self.lose.clone() })
    }
}

async fn wait_recorded(log: &Arc<Mutex<Vec<Recorded>>>, expected: &[Recorded]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while log.lock().unwrap().as_slice() != expected {
        assert!(Instant::now() < deadline, "expected {expected:?}, got {:?}", log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A driver with a recording connector, running in a task.
struct RecordingDriver {
    connector: RecordingConnector,
    log: Arc<Mutex<Vec<Recorded>>>,
    status: tokio::sync::watch::Receiver<DriverStatus>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), RtcError>>,
}

impl RecordingDriver {
    fn spawn(room: Room, options: DriverOptions) -> Self {
        Self::spawn_with(room, options, RecordingConnector::default())
    }

    fn spawn_with(room: Room, options: DriverOptions, connector: RecordingConnector) -> Self {
        let log = connector.log.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let driver = LiveKitRoomDriver::with_options(room, connector.clone(), options);
        let status = driver.status();
        let task = tokio::spawn(driver.run_until(async {
            let _ = stopped.await;
        }));
        Self { connector, log, status, stop, task }
    }

    /// Stops the driver and checks that it ended without an error.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        assert!(matches!(*self.status.borrow(), DriverStatus::Stopped));
    }
}

#[tokio::test]
async fn the_driver_connects_while_our_device_is_in_the_call() {
    let (stack, _, a, b, room_id) = two_peers().await;
    let driver = RecordingDriver::spawn(b.room(&room_id), DriverOptions::default());
    let log = driver.log.clone();

    // Someone else's call does not make us connect (checked below: the one connect happened
    // with our own device in the call).
    let alice = join(&a, &room_id, &stack).await;
    alice.wait_joined(Duration::from_secs(10)).await.unwrap();

    let bob = join(&b, &room_id, &stack).await;
    wait_recorded(&log, &[Recorded::Connect(stack.auth_service_url.clone())]).await;
    let calls = driver.connector.calls.lock().unwrap().clone();
    assert!(
        calls[0].contains(&(b.user.user_id.clone(), "BOBDEV".to_owned())),
        "connected only once our device was in the call: {calls:?}"
    );
    bob.leave().await.unwrap();
    wait_recorded(&log, &[Recorded::Connect(stack.auth_service_url.clone()), Recorded::Disconnect])
        .await;

    driver.stop().await;
    alice.leave().await.unwrap();
}

#[tokio::test]
async fn the_driver_can_follow_any_active_call() {
    let (stack, _, a, b, room_id) = two_peers().await;
    let mut options = DriverOptions::default();
    options.presence = Presence::AnyActiveCall;
    options.service_url = Some("https://explicit.example".to_owned());
    let driver = RecordingDriver::spawn(b.room(&room_id), options);
    let log = driver.log.clone();
    let alice = join(&a, &room_id, &stack).await;
    wait_recorded(&log, &[Recorded::Connect("https://explicit.example".into())]).await;
    alice.leave().await.unwrap();
    wait_recorded(
        &log,
        &[Recorded::Connect("https://explicit.example".into()), Recorded::Disconnect],
    )
    .await;
    // Stopping the driver while disconnected records nothing more.
    driver.stop().await;
    assert_eq!(log.lock().unwrap().len(), 2);
}

/// `Follow`: the driver joins with its own membership (seen by the other client) when somebody
/// starts a call, connects, and leaves and disconnects when the last other member has left.
#[tokio::test]
async fn the_driver_follows_calls_with_its_own_membership() {
    let (stack, _, a, b, room_id) = two_peers().await;
    let mut options = DriverOptions::default();
    options.presence = Presence::Follow;
    options.service_url = Some(stack.auth_service_url.clone());
    let driver = RecordingDriver::spawn(b.room(&room_id), options);
    let a_sees = RoomCallObserver::new(&a.room(&room_id)).await.unwrap();

    let alice = join(&a, &room_id, &stack).await;
    let state = a_sees
        .wait_for(Duration::from_secs(15), |s| s.member(&b.user.user_id, "BOBDEV").is_some())
        .await
        .expect("the driver joins Alice's call with its own membership");
    let bob = state.member(&b.user.user_id, "BOBDEV").unwrap();
    assert_eq!(
        bob.transport.as_ref().unwrap().livekit_service_url(),
        Some(stack.auth_service_url.as_str())
    );
    wait_recorded(&driver.log, &[Recorded::Connect(stack.auth_service_url.clone())]).await;
    assert_eq!(driver.connector.member_ids.lock().unwrap().as_slice(), [None]);

    alice.leave().await.unwrap();
    a_sees
        .wait_for(Duration::from_secs(15), |s| !s.is_active())
        .await
        .expect("the driver leaves when Alice has left");
    wait_recorded(
        &driver.log,
        &[Recorded::Connect(stack.auth_service_url.clone()), Recorded::Disconnect],
    )
    .await;
    driver.stop().await;
}

/// `Always` with a sticky membership: the driver starts the call alone, hands its member id to
/// the connector, reconnects after a failed connect and after a lost connection, and leaves on
/// shutdown.
#[tokio::test]
async fn the_driver_stays_in_the_call_and_reconnects() {
    let (stack, _, a, b, room_id) = two_peers().await;
    let mut options = DriverOptions::default();
    options.presence = Presence::Always;
    options.sticky = true;
    options.service_url = Some(stack.auth_service_url.clone());
    options.retry_delay = Duration::from_millis(200);
    let connector = RecordingConnector::default();
    *connector.fail.lock().unwrap() = 1;
    let driver = RecordingDriver::spawn_with(b.room(&room_id), options, connector);
    let a_sees = RoomCallObserver::new(&a.room(&room_id)).await.unwrap();
    let state = a_sees
        .wait_for(Duration::from_secs(15), |s| s.member(&b.user.user_id, "BOBDEV").is_some())
        .await
        .expect("the driver starts the call alone");
    let member_id = state.member(&b.user.user_id, "BOBDEV").unwrap().membership.member_id.clone();

    // The first connect fails (the test refuses it), the second works.
    let url = stack.auth_service_url.clone();
    wait_recorded(&driver.log, &[Recorded::Connect(url.clone()), Recorded::Connect(url.clone())])
        .await;
    let ids = driver.connector.member_ids.lock().unwrap().clone();
    assert_eq!(ids, [Some(member_id.clone()), Some(member_id)], "the sticky member id");
    let mut status = driver.status.clone();
    status
        .wait_for(|s| matches!(s, DriverStatus::Connected))
        .await
        .expect("connected after the retry");

    // The connection ends by itself: the driver connects again.
    driver.connector.lose.notify_one();
    wait_recorded(
        &driver.log,
        &[Recorded::Connect(url.clone()), Recorded::Connect(url.clone()), Recorded::Connect(url)],
    )
    .await;

    driver.stop().await;
    a_sees
        .wait_for(Duration::from_secs(15), |s| !s.is_active())
        .await
        .expect("the driver left on shutdown");
}

/// Sticky memberships are timeline events, not state: an observer started after one was sent
/// reads it back from the room's recent history.
#[tokio::test]
async fn an_observer_started_later_sees_an_earlier_sticky_membership() {
    let (stack, _, a, b, room_id) = two_peers().await;
    let mut options = JoinOptions::new(&stack.auth_service_url);
    options.sticky = true;
    let membership = OwnMembership::join_with(&a.room(&room_id), options).await.unwrap();
    membership.wait_joined(Duration::from_secs(10)).await.unwrap();
    // B's client has the event once its sync brought it; only then is "later" later.
    let early = RoomCallObserver::new(&b.room(&room_id)).await.unwrap();
    early
        .wait_for(Duration::from_secs(10), |s| s.member(&a.user.user_id, "ALICEDEV").is_some())
        .await
        .unwrap();
    let late = RoomCallObserver::new(&b.room(&room_id)).await.unwrap();
    let member = late.state();
    let member = member.member(&a.user.user_id, "ALICEDEV").expect("the late observer sees A");
    assert_eq!(member.membership.dialect, Dialect::Sticky);
    assert_eq!(Some(member.membership.member_id.as_str()), membership.member_id());
    membership.leave().await.unwrap();
    late.wait_for(Duration::from_secs(10), |s| !s.is_active()).await.expect("and its leave");
}
