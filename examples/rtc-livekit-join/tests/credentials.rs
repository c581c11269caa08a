//! Every way to LiveKit credentials, against the real stack: discovery with `/sfu/get` (state
//! membership) and `/get_token` (sticky membership), an explicit `LIVEKIT_SFU_GET_URL`, a static
//! `LIVEKIT_SERVICE_URL` + `LIVEKIT_TOKEN`; rooms by alias with `VIA_SERVERS`; the stored session
//! and device reused by the next run. Each bot publishes red frames and must appear on LiveKit
//! with the identity its credentials imply and a published track. Needs `cargo xtask devstack up`.

mod common;

use std::time::{Duration, SystemTime};

use common::{Bot, Setup, field};
use matrixrtc_auth::access_token::{Claims, VideoGrant};
use matrixrtc_auth::room_service::RoomServiceClient;
use matrixrtc_auth::secret::Secret;
use nix::sys::signal::Signal;
use rtc_test_support::encode_path_segment;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// Runs the program until it publishes; checks the identity LiveKit sees; stops it with
/// SIGTERM and checks that it left. Returns the device it used.
async fn publishes_as(
    setup: &Setup,
    env: &[(&'static str, String)],
    identity: impl Fn(&str) -> String,
) -> String {
    let mut bot = Bot::start(env);
    bot.wait_line(WAIT, |l| l.contains("milestone=\"first_frame\"")).await;
    let login = bot.wait_line(WAIT, |l| l.contains("logged in") && l.contains("device=")).await;
    let device = field(&login, "device").unwrap().to_owned();
    let expected = identity(&device);
    let credentials = bot.wait_line(WAIT, |l| l.contains("milestone=\"credentials\"")).await;
    assert!(credentials.contains(&format!(" as {expected} ")), "{credentials}");
    setup
        .wait_participants(WAIT, |p| {
            p.iter().any(|p| p.identity == expected && !p.tracks.is_empty())
        })
        .await;
    bot.signal(Signal::SIGTERM);
    assert_eq!(bot.wait_exit(Duration::from_secs(5)).await.code(), Some(0), "{}", bot.log());
    setup
        .wait_participants(Duration::from_secs(10), |p| p.iter().all(|p| p.identity != expected))
        .await;
    device
}

#[tokio::test]
async fn discovery_with_sfu_get_and_the_same_device_next_time() {
    let setup = Setup::new("disc").await;
    let user = setup.bot.user_id.clone();
    let first = publishes_as(&setup, &setup.env(), |device| format!("{user}:{device}")).await;
    setup.wait_membership_gone(&first, Duration::from_secs(5)).await;

    // The stored session and device are reused, without a password login.
    let mut bot = Bot::start(&setup.env());
    let restored = bot.wait_line(WAIT, |l| l.contains("logged in (stored session)")).await;
    assert_eq!(field(&restored, "device"), Some(first.as_str()));
    assert!(!bot.logged("logged in user="), "no password login: {}", bot.log());
    bot.wait_line(WAIT, |l| l.contains("milestone=\"first_frame\"")).await;
    bot.signal(Signal::SIGTERM);
    assert_eq!(bot.wait_exit(Duration::from_secs(5)).await.code(), Some(0));
}

#[tokio::test]
async fn discovery_with_get_token_for_a_sticky_membership() {
    let setup = Setup::new("sticky").await;
    let mut env = setup.env();
    env.push(("MATRIXRTC_MEMBERSHIP", "sticky".into()));
    let user = setup.bot.user_id.clone();
    // The identity is the hash of user, device and the sticky membership's id, read back from
    // the room.
    let mut bot = Bot::start(&env);
    bot.wait_line(WAIT, |l| l.contains("milestone=\"first_frame\"")).await;
    let device = field(&bot.wait_line(WAIT, |l| l.contains("logged in user=")).await, "device")
        .unwrap()
        .to_owned();
    let filter = json!({"types": ["org.matrix.msc4143.rtc.member"]}).to_string();
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10&filter={}",
        encode_path_segment(&setup.room_id),
        encode_path_segment(&filter)
    );
    let messages = setup.hs.get(&setup.owner, &path).await.unwrap();
    let member_id = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["sender"] == user.as_str())
        .and_then(|e| e["content"]["member"]["id"].as_str())
        .expect("the sticky membership is in the room")
        .to_owned();
    let expected = matrixrtc_identity::hashed_identity(&user, &device, &member_id);
    setup
        .wait_participants(WAIT, |p| {
            p.iter().any(|p| p.identity == expected && !p.tracks.is_empty())
        })
        .await;
    bot.signal(Signal::SIGTERM);
    assert_eq!(bot.wait_exit(Duration::from_secs(5)).await.code(), Some(0));
}

#[tokio::test]
async fn an_explicit_sfu_get_url_wins_over_static_credentials() {
    let setup = Setup::new("sfuget").await;
    let mut env = setup.env();
    env.push(("LIVEKIT_SFU_GET_URL", format!("{}/sfu/get", setup.stack.auth_service_url)));
    env.push(("LIVEKIT_SERVICE_URL", "wss://ignored.example.org".into()));
    env.push(("LIVEKIT_TOKEN", "ignored".into()));
    let user = setup.bot.user_id.clone();
    publishes_as(&setup, &env, |device| format!("{user}:{device}")).await;
}

#[tokio::test]
async fn a_static_livekit_url_and_token() {
    let setup = Setup::new("static").await;
    let identity = format!("{}:STATICDEV", setup.bot.user_id);
    let room = matrixrtc_identity::livekit_room_alias(&setup.room_id, "m.call#ROOM");
    let secret = Secret::new(setup.stack.livekit_api_secret.clone());
    // A token minted elsewhere; the LiveKit room exists (as the authorization service would have
    // made it).
    RoomServiceClient::new(
        &setup.stack.livekit_url.parse().unwrap(),
        setup.stack.livekit_api_key.clone(),
        secret.clone(),
        Duration::from_secs(10),
    )
    .unwrap()
    .create_room(&room)
    .await
    .unwrap();
    let token = Claims::new(
        setup.stack.livekit_api_key.clone(),
        identity.clone(),
        VideoGrant::participant(room),
        SystemTime::now(),
        Duration::from_secs(3600),
    )
    .sign(&secret)
    .expect("test claims serialise");
    let mut env = setup.env();
    env.push(("MATRIX_DEVICE_ID", "STATICDEV".into()));
    env.push(("LIVEKIT_SERVICE_URL", setup.stack.livekit_url.clone()));
    env.push(("LIVEKIT_TOKEN", token.clone()));
    let mut bot = Bot::start(&env);
    bot.wait_line(WAIT, |l| l.contains("milestone=\"first_frame\"")).await;
    setup
        .wait_participants(WAIT, |p| {
            p.iter().any(|p| p.identity == identity && !p.tracks.is_empty())
        })
        .await;
    assert!(!bot.log().contains(&token[token.len() - 20..]), "the token is not logged");
    bot.signal(Signal::SIGTERM);
    assert_eq!(bot.wait_exit(Duration::from_secs(5)).await.code(), Some(0));
}

#[tokio::test]
async fn a_room_alias_with_via_servers() {
    let setup = Setup::new("alias").await;
    let alias = format!("#{}:{}", rtc_test_support::unique_name("call"), setup.stack.server_name);
    let http = reqwest::Client::new();
    let created = http
        .put(format!(
            "{}/_matrix/client/v3/directory/room/{}",
            setup.stack.homeserver_url,
            encode_path_segment(&alias)
        ))
        .bearer_auth(&setup.owner.access_token)
        .json(&json!({"room_id": setup.room_id}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);
    let mut env: Vec<(&'static str, String)> =
        setup.env().into_iter().filter(|(name, _)| *name != "ROOM_ID").collect();
    env.push(("ROOM_ID", alias));
    env.push(("VIA_SERVERS", format!(" {} , ", setup.stack.server_name)));
    let user = setup.bot.user_id.clone();
    let device = publishes_as(&setup, &env, |device| format!("{user}:{device}")).await;
    let membership: Value = setup.membership(&device).await;
    assert!(membership.get("application").is_none(), "left: {membership}");
}
