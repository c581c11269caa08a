//! The service binary, logging at the most verbose level, never prints the LiveKit API secret, an
//! OpenID access token or a minted JWT: not for a good request, not for a refused one.
//!
//! Needs the local stack (`cargo xtask devstack up`) for real OpenID tokens.

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{call_room, post};
use serde_json::json;

#[tokio::test]
async fn trace_logs_hold_no_secret() {
    let call = call_room().await;
    let stack = &call.stack;
    let secret = stack.livekit_api_secret.as_str();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_matrixrtc-auth"))
        .env_clear()
        .env("LIVEKIT_URL", &stack.livekit_url)
        .env("LIVEKIT_KEY", &stack.livekit_api_key)
        .env("LIVEKIT_SECRET", secret)
        .env("LIVEKIT_FULL_ACCESS_HOMESERVERS", "*")
        .env("LIVEKIT_JWT_BIND", format!("127.0.0.1:{port}"))
        .env(
            "MATRIXRTC_AUTH_FEDERATION_OVERRIDES",
            format!("{}={}", stack.server_name, stack.homeserver_url),
        )
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the service binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while common::http().get(format!("{base}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "the service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let openid = call.hs.openid_token(&call.alice).await.unwrap();
    let access_token = openid["access_token"].as_str().unwrap().to_owned();
    let good = post(
        &format!("{base}/sfu/get"),
        json!({"room": call.room_id, "openid_token": openid, "device_id": "ALICEDEV"}).to_string(),
    )
    .await;
    assert_eq!(good.status, 200, "{:?}", good.body);
    let jwt = good.body["jwt"].as_str().unwrap().to_owned();

    let refused_token = "refused-token-that-must-not-be-logged";
    let refused = post(
        &format!("{base}/get_token"),
        json!({
            "room_id": call.room_id, "slot_id": "m.call#ROOM",
            "openid_token": {"access_token": refused_token, "token_type": "Bearer", "matrix_server_name": stack.server_name, "expires_in": 3600},
            "member": {"id": "m", "claimed_user_id": call.alice.user_id, "claimed_device_id": "ALICEDEV"},
        })
        .to_string(),
    )
    .await;
    assert_eq!(refused.status, 401);
    let unreachable_token = "unreachable-token-that-must-not-be-logged";
    let unreachable = post(
        &format!("{base}/sfu/get"),
        json!({
            "room": call.room_id, "device_id": "D",
            "openid_token": {"access_token": unreachable_token, "token_type": "Bearer", "matrix_server_name": "127.0.0.1:1", "expires_in": 3600},
        })
        .to_string(),
    )
    .await;
    assert_eq!(unreachable.status, 502);

    nix_terminate(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "the service stops cleanly on SIGTERM: {status}");
    let mut logs = String::new();
    child.stdout.take().unwrap().read_to_string(&mut logs).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();

    assert!(logs.contains("issued LiveKit token"), "the logs are there at all:\n{logs}");
    assert!(logs.contains("OpenID verification failed"), "{logs}");
    for (what, value) in [
        ("API secret", secret),
        ("OpenID token", access_token.as_str()),
        ("refused OpenID token", refused_token),
        ("unreachable OpenID token", unreachable_token),
        ("JWT signature", jwt.rsplit('.').next().unwrap()),
    ] {
        assert!(!logs.contains(value), "the {what} appears in the logs");
    }
}

fn nix_terminate(child: &std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}
