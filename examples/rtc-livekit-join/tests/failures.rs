//! Each way the program cannot get into a call ends in one line naming the cause and what to
//! do, with the exit code of its kind: 2 configuration, 3 authentication, 4 network. Against the
//! real stack; a homeserver without transports and one that refuses OpenID tokens are the real
//! Synapse behind a proxy that hides those endpoints. Needs `cargo xtask devstack up`.

mod common;

use std::time::Duration;

use common::{Bot, Setup, closed_port, filtering_proxy};

/// Runs the program with `env` changed by `overrides` (an empty value removes the variable);
/// returns its exit code and last line.
async fn run(setup: &Setup, overrides: &[(&'static str, String)]) -> (Option<i32>, String) {
    let mut bot = Bot::start(&setup.env_with(overrides));
    let status = bot.wait_exit(Duration::from_secs(60)).await;
    let line = bot.last_line();
    if !line.contains("ERROR") {
        eprintln!("the whole log:\n{}", bot.log());
    }
    eprintln!("exit {:?}: {line}", status.code());
    assert!(line.contains("ERROR"), "the reason is an error line:\n{}", bot.log());
    for secret in [setup.password.as_str(), "TOKEN-SECRET"] {
        assert!(!bot.log().contains(&format!("={secret}")), "no secret in the log");
    }
    (status.code(), line)
}

#[tokio::test]
async fn a_wrong_password() {
    let setup = Setup::new("pw").await;
    let (code, line) = run(&setup, &[("MATRIX_PASSWORD", "not-the-password".into())]).await;
    assert_eq!(code, Some(3));
    assert!(line.contains("MATRIX_PASSWORD"), "{line}");
}

#[tokio::test]
async fn an_unknown_room_and_an_unknown_alias() {
    let setup = Setup::new("room").await;
    let (code, line) = run(&setup, &[("ROOM_ID", "!doesnotexist:localhost".into())]).await;
    assert_eq!(code, Some(2));
    assert!(line.contains("cannot join the room") && line.contains("ROOM_ID"), "{line}");
    let (code, line) = run(
        &setup,
        &[("ROOM_ID", "#nobody-made-this:localhost".into()), ("VIA_SERVERS", "localhost".into())],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(line.contains("unknown to the homeserver"), "{line}");
}

#[tokio::test]
async fn an_unreachable_homeserver_and_tls_with_a_plain_one() {
    let setup = Setup::new("hs").await;
    let (code, line) =
        run(&setup, &[("HOMESERVER_URL", format!("http://127.0.0.1:{}", closed_port()))]).await;
    assert_eq!(code, Some(4));
    assert!(
        line.contains("cannot reach the homeserver") && line.contains("HOMESERVER_URL"),
        "{line}"
    );
    // https:// to a plain-HTTP server (LiveKit's port: Go answers a ClientHello with a 400).
    let plain = setup.stack.livekit_url.replacen("ws://", "https://", 1);
    let (code, line) = run(&setup, &[("HOMESERVER_URL", plain)]).await;
    assert_eq!(code, Some(4));
    assert!(line.contains("TLS") && line.contains("HOMESERVER_URL"), "{line}");
}

#[tokio::test]
async fn a_homeserver_without_a_livekit_transport() {
    let setup = Setup::new("notransport").await;
    let homeserver = filtering_proxy(
        &setup.stack.homeserver_url,
        &[
            "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports",
            "/.well-known/matrix/client",
        ],
        404,
        r#"{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}"#,
    )
    .await;
    let (code, line) = run(&setup, &[("HOMESERVER_URL", homeserver)]).await;
    assert_eq!(code, Some(2));
    assert!(
        line.contains("advertises no LiveKit transport") && line.contains("LIVEKIT_SFU_GET_URL"),
        "{line}"
    );
}

#[tokio::test]
async fn an_authorization_service_that_refuses() {
    let setup = Setup::new("refused").await;
    // A real matrixrtc-auth whose homeserver does not confirm OpenID tokens.
    let homeserver = filtering_proxy(
        &setup.stack.homeserver_url,
        &["/_matrix/federation/v1/openid/userinfo"],
        401,
        r#"{"errcode":"M_UNKNOWN_TOKEN","error":"Access Token unknown or expired"}"#,
    )
    .await;
    let mut raw = matrixrtc_auth::config::RawConfig::default();
    raw.livekit_url = Some(setup.stack.livekit_url.clone());
    raw.livekit_key = Some(setup.stack.livekit_api_key.clone());
    raw.livekit_secret = Some(setup.stack.livekit_api_secret.parse().unwrap());
    raw.full_access_homeservers = Some("*".into());
    raw.bind = Some("127.0.0.1:0".into());
    raw.outbound_timeout_ms = 10_000;
    raw.max_body_bytes = 64 * 1024;
    raw.federation_overrides = vec![format!("{}={homeserver}", setup.stack.server_name)];
    raw.outbound_allow = vec!["127.0.0.1".into()];
    let config = matrixrtc_auth::config::Config::from_raw(raw).unwrap();
    let listener = tokio::net::TcpListener::bind(config.bind).await.unwrap();
    let service = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(matrixrtc_auth::serve(listener, config, std::future::pending()));

    let (code, line) = run(&setup, &[("LIVEKIT_SFU_GET_URL", format!("{service}/sfu/get"))]).await;
    assert_eq!(code, Some(3));
    assert!(line.contains("refused") && line.contains("401") && line.contains("OpenID"), "{line}");
}

#[tokio::test]
async fn a_livekit_url_without_rtc_and_tls_with_a_plain_livekit() {
    let setup = Setup::new("lk").await;
    // The homeserver is no LiveKit server: its /rtc is a 404.
    let (code, line) = run(
        &setup,
        &[
            ("LIVEKIT_SERVICE_URL", setup.stack.homeserver_url.clone()),
            ("LIVEKIT_TOKEN", "TOKEN-SECRET".into()),
        ],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(line.contains("HTTP 404") && line.contains("/rtc"), "{line}");
    // wss:// to a LiveKit server that speaks plain WebSocket.
    let tls = setup.stack.livekit_url.replacen("ws://", "wss://", 1);
    let (code, line) =
        run(&setup, &[("LIVEKIT_SERVICE_URL", tls), ("LIVEKIT_TOKEN", "TOKEN-SECRET".into())])
            .await;
    assert_eq!(code, Some(4));
    assert!(line.contains("TLS") && line.contains("scheme"), "{line}");
    assert!(!line.contains("TOKEN-SECRET"));
}

#[tokio::test]
async fn configuration_errors_stop_before_anything_starts() {
    let setup = Setup::new("conf").await;
    let (code, line) = run(&setup, &[("ROOM_ID", "   ".into())]).await;
    assert_eq!(code, Some(2));
    assert!(line.contains("ROOM_ID"), "{line}");
    let (code, line) = run(&setup, &[("LIVEKIT_TOKEN", "TOKEN-SECRET".into())]).await;
    assert_eq!(code, Some(2));
    assert!(line.contains("LIVEKIT_SERVICE_URL"), "{line}");
    let insecure = "http://matrix.example.org".to_owned();
    let (code, line) = run(&setup, &[("HOMESERVER_URL", insecure)]).await;
    assert_eq!(code, Some(2));
    assert!(line.contains("plain http"), "{line}");
    let missing = "file:/nonexistent/sound.wav".to_owned();
    let (code, line) = run(&setup, &[("AUDIO_SOURCE", missing)]).await;
    assert_eq!(code, Some(2));
    assert!(line.contains("AUDIO_SOURCE") && line.contains("/nonexistent/sound.wav"), "{line}");
    let not_wav = std::env::temp_dir().join(rtc_test_support::unique_name("not-a.wav"));
    std::fs::write(&not_wav, b"RIFF\x04\x00\x00\x00MP3 garbage").unwrap();
    let (code, line) =
        run(&setup, &[("AUDIO_SOURCE", format!("file:{}", not_wav.display()))]).await;
    assert_eq!(code, Some(2));
    assert!(line.contains("AUDIO_SOURCE"), "{line}");
    let _ = std::fs::remove_file(not_wav);
}
