//! Element Call hosted by the program (feature `experimental-widgets`; `cargo xtask test` runs
//! these with it): the program, given `ELEMENT_CALL_URL`, serves a page that embeds Element Call
//! 0.26.1 and relays its widget API to matrix-sdk's widget driver. Headless Chromium opens that
//! page, and a second, standalone Element Call (another user) is in the same call; each sees the
//! other's moving camera. The membership and its delayed leave are sent by the program's driver
//! (read back from the homeserver); killing the program removes the membership within the
//! delayed leave's timeout; in an encrypted room the media keys go out Olm-encrypted and both
//! decrypt each other; SIGTERM makes Element Call leave. Refused: the page and its WebSocket
//! without the secret or from another origin, messages posted from another origin, capabilities
//! the policy does not grant.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`).

mod common;

use std::time::{Duration, Instant};

use common::{Bot, STDOUT_MARK, Setup, localpart};
use rtc_test_support::{ElementCall, Login, encode_path_segment};
use serde_json::Value;

/// The program's device: its membership's state key names it.
const DEVICE: &str = "HOSTEDEC";
const CALL_MEMBER: &str = "org.matrix.msc3401.call.member";

fn hosting_env(setup: &Setup) -> Vec<(&'static str, String)> {
    vec![
        ("HOMESERVER_URL", setup.stack.homeserver_url.clone()),
        ("MATRIX_USERNAME", setup.password.clone()),
        ("MATRIX_PASSWORD", setup.password.clone()),
        ("MATRIX_DEVICE_ID", DEVICE.into()),
        ("ROOM_ID", setup.room_id.clone()),
        ("MATRIX_STORE_DIR", setup.store.display().to_string()),
        ("ELEMENT_CALL_URL", setup.stack.element_call_url.clone()),
        ("RUST_LOG", "info,matrix_sdk_rtc_widget=debug".into()),
    ]
}

/// Starts the program hosting Element Call; the page's URL it printed.
async fn start_host(setup: &Setup) -> (Bot, String) {
    let bot = Bot::start(&hosting_env(setup));
    let line = bot
        .wait_line(Duration::from_secs(60), |l| {
            l.starts_with(STDOUT_MARK) && l.contains("open http://127.0.0.1:")
        })
        .await;
    let url = line.rsplit(' ').next().unwrap().to_owned();
    assert!(url.contains("?secret="), "{url}");
    (bot, url)
}

/// The secret must not be in the log (only on stdout, for the person who opens the page).
fn assert_secret_not_logged(bot: &Bot, page_url: &str) {
    let secret = page_url.split("secret=").nth(1).unwrap();
    for line in bot.log().lines().filter(|l| !l.starts_with(STDOUT_MARK)) {
        assert!(!line.contains(secret), "the page's secret in a log line: {line}");
    }
}

/// The program's own session on the homeserver, for reading what it did.
async fn checker(setup: &Setup) -> rtc_test_support::User {
    setup.hs.login(&setup.password, &setup.password, "CHECKER").await.unwrap()
}

/// The account's delayed events (MSC4140) that are still scheduled.
async fn delayed_events(setup: &Setup, user: &rtc_test_support::User) -> Vec<Value> {
    let listing = setup
        .hs
        .get(user, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events")
        .await
        .unwrap();
    listing["delayed_events"].as_array().cloned().unwrap_or_default()
}

fn state_key(setup: &Setup) -> String {
    format!("_{}_{DEVICE}_m.call", setup.bot.user_id)
}

/// The homeserver's access log lines of `user`'s requests.
fn access_log(setup: &Setup, user: &str) -> Vec<String> {
    let log = setup.stack.state_dir.join("synapse/homeserver.log");
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    text.lines()
        .filter(|l| l.contains("synapse.access") && l.contains(&format!("{{{user}}}")))
        .map(str::to_owned)
        .collect()
}

/// Waits for `event` from `browser`, failing with everything it and the program said.
async fn expect(browser: &mut ElementCall, bot: &Bot, event: &str, within: Duration) -> Value {
    match browser.wait(event, None, within).await {
        Ok(event) => event,
        Err(error) => panic!("{error}\nthe program's log:\n{}", bot.log()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_element_call_is_in_the_call_and_killing_the_host_leaves_no_ghost() {
    let setup = Setup::new("ecwidget").await;
    let (mut bot, page_url) = start_host(&setup).await;
    refusals_of_the_page(&page_url).await;

    let forged = format!("forged by another origin {}", std::process::id());
    let forge_from = format!("{}/_matrix/client/versions", setup.stack.homeserver_url);
    let forging = [("FORGE_BODY", forged.clone()), ("FORGE_FROM_URL", forge_from)];
    let (mut hosted, standalone) = both_in_the_call(&setup, &bot, &page_url, &forging).await;

    // The membership and its delayed leave, as the homeserver has them, sent by our driver.
    let membership = setup.membership(DEVICE).await;
    assert_eq!(membership["device_id"], DEVICE, "{membership}");
    assert_eq!(membership["application"], "m.call", "{membership}");
    let check = checker(&setup).await;
    let delayed = delayed_events(&setup, &check).await;
    let leave = delayed
        .iter()
        .find(|d| d["type"] == CALL_MEMBER && d["state_key"] == state_key(&setup))
        .unwrap_or_else(|| panic!("no delayed leave for the membership: {delayed:?}"));
    assert_eq!(leave["content"], serde_json::json!({}), "{leave}");
    let delay = Duration::from_millis(leave["delay"].as_u64().unwrap());
    let requests = access_log(&setup, &setup.bot.user_id);
    let membership_puts: Vec<&String> = requests
        .iter()
        .filter(|l| {
            l.contains("\"PUT /_matrix/client/v3/rooms/")
                && l.contains(&format!("/state/{CALL_MEMBER}/"))
                && l.contains(&format!("_{DEVICE}_m.call"))
        })
        .collect();
    // Element Call has no access token of the account: a request from the browser would carry
    // Chromium's user agent.
    assert!(
        membership_puts.iter().all(|l| !l.contains("Mozilla/")),
        "every membership request came from the program's driver: {membership_puts:#?}"
    );
    assert!(
        membership_puts.iter().any(|l| l.contains("?org.matrix.msc4140.delay=")),
        "the delayed leave: {membership_puts:#?}"
    );
    assert!(
        membership_puts.iter().any(|l| !l.contains("msc4140.delay")),
        "the membership: {membership_puts:#?}"
    );
    // Element Call asked for capabilities the policy does not grant (legacy 1:1 call signalling).
    let decided =
        bot.wait_line(Duration::from_secs(1), |l| l.contains("capabilities decided")).await;
    assert!(decided.contains("org.matrix.msc3819.send.to_device:m.call.invite"), "{decided}");

    // Messages posted from another origin (and from the page itself) go nowhere.
    let rejected = expect(&mut hosted, &bot, "forged-rejected", Duration::from_secs(60)).await;
    eprintln!("forged messages: {rejected}");
    let messages = setup
        .hs
        .get(
            &setup.owner,
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                encode_path_segment(&setup.room_id)
            ),
        )
        .await
        .unwrap();
    assert!(!messages.to_string().contains(&forged), "a forged message reached the room");
    assert!(
        !bot.logged("a message from the page was refused"),
        "the page relayed a forged message"
    );

    // Killed: the homeserver sends the delayed leave by itself.
    bot.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    bot.wait_exit(Duration::from_secs(10)).await;
    let gone = setup.wait_membership_gone(DEVICE, delay + Duration::from_secs(10)).await;
    eprintln!("membership gone {:?} after the kill (delayed leave {delay:?})", killed.elapsed());
    assert!(gone <= delay + Duration::from_secs(10));
    assert_secret_not_logged(&bot, &page_url);
    hosted.stop().await;
    standalone.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_encrypted_room_the_keys_go_olm_encrypted_and_sigterm_makes_element_call_leave() {
    let setup = Setup::encrypted("ecwidgete2ee").await;
    let (mut bot, page_url) = start_host(&setup).await;
    // Decrypted both ways: without the other's key Element Call shows no moving picture.
    let waiting = [("WAIT_ENDED_SECONDS", "120".to_owned())];
    let (mut hosted, standalone) = both_in_the_call(&setup, &bot, &page_url, &waiting).await;

    // The program's keys went out Olm-encrypted (m.room.encrypted), never in clear.
    let requests = access_log(&setup, &setup.bot.user_id);
    let to_device = |kind: &str| {
        requests.iter().filter(|l| l.contains(&format!("/sendToDevice/{kind}/"))).count()
    };
    assert!(to_device("m.room.encrypted") > 0, "no encrypted to-device: {requests:#?}");
    assert_eq!(to_device("io.element.call.encryption_keys"), 0, "keys sent in clear");

    // SIGTERM: the host asks Element Call to leave; it removes its membership itself.
    expect(&mut hosted, &bot, "waiting-ended", Duration::from_secs(30)).await;
    bot.signal(nix::sys::signal::Signal::SIGTERM);
    let stopped = Instant::now();
    let status = bot.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}; the log:\n{}", bot.log());
    let gone = setup.wait_membership_gone(DEVICE, Duration::from_secs(5)).await;
    eprintln!("SIGTERM: exit after {:?}, membership gone", stopped.elapsed());
    assert!(gone < Duration::from_secs(5));
    // Element Call left through the driver and closed; no delayed leave was left to send.
    let ended = bot
        .wait_line(Duration::from_secs(1), |l| {
            l.contains("the page's session ended: Element Call closed")
        })
        .await;
    assert!(ended.contains("delayed_events_sent=0"), "{ended}");
    let check = checker(&setup).await;
    let leftover: Vec<Value> = delayed_events(&setup, &check)
        .await
        .into_iter()
        .filter(|d| d["state_key"] == state_key(&setup))
        .collect();
    assert!(leftover.is_empty(), "Element Call's delayed leave is still scheduled: {leftover:?}");
    let ended = expect(&mut hosted, &bot, "host-ended", Duration::from_secs(30)).await;
    eprintln!("the page: {ended}");
    assert_secret_not_logged(&bot, &page_url);
    standalone.stop().await;
}

/// Element Call through the host's page (with `settings` besides the video check), then a
/// standalone Element Call as the room's owner; both in the call, each showing the other's
/// camera, moving.
async fn both_in_the_call(
    setup: &Setup,
    bot: &Bot,
    page_url: &str,
    settings: &[(&str, String)],
) -> (ElementCall, ElementCall) {
    let mut hosted_settings = vec![
        ("EXPECT_VIDEO", "moving".to_owned()),
        ("EXPECT_PARTICIPANT", localpart(&setup.owner.user_id)),
        ("STAY_SECONDS", "150".into()),
    ];
    hosted_settings.extend(settings.iter().cloned());
    let mut hosted = ElementCall::start(
        &setup.stack,
        Login::HostPage(page_url),
        &setup.room_id,
        &hosted_settings,
    )
    .unwrap();
    expect(&mut hosted, bot, "in-call", Duration::from_secs(90)).await;

    let owner_name = localpart(&setup.owner.user_id);
    let ec = setup.hs.login(&owner_name, &owner_name, "OWNEREC").await.unwrap();
    let mut standalone = ElementCall::start(
        &setup.stack,
        Login::Session(&ec),
        &setup.room_id,
        &[
            ("EXPECT_VIDEO", "moving".into()),
            ("EXPECT_PARTICIPANT", localpart(&setup.bot.user_id)),
            ("STAY_SECONDS", "120".into()),
        ],
    )
    .unwrap();
    let seen_by_standalone =
        expect(&mut standalone, bot, "video-seen", Duration::from_secs(120)).await;
    let seen_in_host = expect(&mut hosted, bot, "video-seen", Duration::from_secs(120)).await;
    eprintln!("the standalone Element Call shows the hosted one's camera: {seen_by_standalone}");
    eprintln!("the hosted Element Call shows the standalone one's camera: {seen_in_host}");
    (hosted, standalone)
}

/// The page and its WebSocket refuse requests without the secret, under another host name, and
/// (the WebSocket) from another origin.
async fn refusals_of_the_page(page_url: &str) {
    let url: url::Url = page_url.parse().unwrap();
    let origin = url.origin().ascii_serialization();
    let secret = url.query_pairs().find(|(k, _)| k == "secret").unwrap().1.into_owned();
    let http = reqwest::Client::new();
    let get = |path: String, headers: Vec<(&'static str, String)>| {
        let mut request = http.get(format!("{origin}{path}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let status = |path: &str, headers: Vec<(&'static str, String)>| {
        let response = get(path.to_owned(), headers);
        async move { response.await.unwrap().status().as_u16() }
    };
    let upgrade = |origin: &str| {
        vec![
            ("connection", "Upgrade".to_owned()),
            ("upgrade", "websocket".to_owned()),
            ("sec-websocket-version", "13".to_owned()),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
            ("origin", origin.to_owned()),
        ]
    };
    assert_eq!(status("/", vec![]).await, 403, "the page without its secret");
    assert_eq!(status("/?secret=0123", vec![]).await, 403, "the page with a wrong secret");
    let page = get(format!("/?secret={secret}"), vec![]).await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let host = vec![("host", "evil.example:80".to_owned())];
    assert_eq!(status(&format!("/?secret={secret}"), host).await, 421, "another host name");
    assert_eq!(status("/ws", upgrade(&origin)).await, 403, "the WebSocket without its secret");
    let ws = format!("/ws?secret={secret}");
    assert_eq!(status(&ws, upgrade("http://evil.example")).await, 403, "another origin");
    assert_eq!(status(&ws, upgrade("null")).await, 403, "an opaque origin");
}
