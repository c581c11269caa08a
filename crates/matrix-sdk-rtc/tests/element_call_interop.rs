//! Interop with the real Element Call 0.26.1 (npm build, standalone) in headless Chromium, driven
//! by playwright-core (`interop/element-call-join.mjs`), on the local stack: Element Call joins
//! the call our bot is in; our `CallSession` lists Element Call with its focus, and our bot shows
//! up in Element Call's call view. The screenshot is kept in `test-artifacts/`.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`).
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk_rtc::membership::FocusSelection;
use matrix_sdk_rtc::{MembershipTimings, OwnMembership, RoomCallObserver};
use rtc_test_support::{ElementCall, Homeserver, Login, StackInfo};

#[tokio::test]
async fn element_call_and_our_bot_see_each_other() {
    let stack = StackInfo::require();
    let hs = Homeserver::new(&stack);
    let alice = hs.register_unique("ecalice").await.unwrap();
    let bot = hs.register_unique("rustbot").await.unwrap();
    let localpart =
        |user_id: &str| user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
    let (alice_name, bot_name) = (localpart(&alice.user_id), localpart(&bot.user_id));
    let room_id = hs.create_call_room(&alice, &[&bot]).await.unwrap();
    hs.join(&bot, &room_id).await.unwrap();

    // Our bot: a matrix-sdk client in the call with its own membership.
    let client = Client::builder().homeserver_url(&stack.homeserver_url).build().await.unwrap();
    client
        .matrix_auth()
        .login_username(&bot_name, &bot_name)
        .device_id("RUSTBOT")
        .send()
        .await
        .unwrap();
    client.sync_once(SyncSettings::default()).await.unwrap();
    let syncing = client.clone();
    tokio::spawn(async move { syncing.sync(SyncSettings::default()).await });
    let room = client.get_room(&room_id.parse::<matrix_sdk::ruma::OwnedRoomId>().unwrap()).unwrap();
    let observer = RoomCallObserver::new(&room).await.unwrap();
    let membership =
        OwnMembership::join(&room, &stack.auth_service_url, MembershipTimings::default())
            .await
            .unwrap();
    membership.wait_joined(Duration::from_secs(10)).await.unwrap();

    // Element Call, logged in as alice on her own device.
    let alice_ec = hs.login(&alice_name, &alice_name, "ALICEEC").await.unwrap();
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("element-call-interop.png");
    let _ = std::fs::remove_file(&screenshot);
    let browser = ElementCall::start(
        &stack,
        Login::Session(&alice_ec),
        &room_id,
        &[
            ("STAY_SECONDS", "15".into()),
            ("SCREENSHOT", screenshot.display().to_string()),
            ("EXPECT_PARTICIPANT", bot_name.clone()),
        ],
    )
    .expect("node runs the Element Call driver");

    // Our CallSession lists Element Call with its identity and focus.
    let started = Instant::now();
    let state = observer
        .wait_for(Duration::from_secs(90), |s| s.member(&alice.user_id, "ALICEEC").is_some())
        .await
        .expect("our CallSession lists Element Call");
    eprintln!(
        "Element Call's membership seen {:.1} s after starting the browser",
        started.elapsed().as_secs_f64()
    );
    let ec = state.member(&alice.user_id, "ALICEEC").unwrap();
    assert_eq!(ec.livekit_identity(), format!("{}:ALICEEC", alice.user_id));
    assert_eq!(ec.membership.focus_selection, Some(FocusSelection::MultiSfu));
    assert_eq!(
        ec.transport.as_ref().unwrap().livekit_service_url(),
        Some(stack.auth_service_url.as_str())
    );
    assert!(state.member(&bot.user_id, "RUSTBOT").is_some(), "and our bot is in the same call");
    assert_eq!(state.service_urls, std::slice::from_ref(&stack.auth_service_url));

    let (status, events) = browser.finish(Duration::from_secs(120)).await.unwrap();
    let events: Vec<String> = events.iter().map(serde_json::Value::to_string).collect();
    assert!(status.success(), "Element Call run failed:\n{}", events.join("\n"));
    assert!(
        events.iter().any(|e| e.contains("\"participant-visible\"")),
        "Element Call did not show our bot:\n{}",
        events.join("\n")
    );
    assert!(screenshot.exists(), "the screenshot is kept as an artifact");

    // Element Call closed without hanging up: its own delayed leave removes it.
    let closed = Instant::now();
    observer
        .wait_for(Duration::from_secs(40), |s| s.member(&alice.user_id, "ALICEEC").is_none())
        .await
        .expect("Element Call's membership goes away after the browser closed");
    eprintln!(
        "Element Call's membership left {:.1} s after the browser closed",
        closed.elapsed().as_secs_f64()
    );
    membership.leave().await.unwrap();
}
