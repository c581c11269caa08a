//! The service binary, logging at the most verbose level, never prints the LiveKit API secret, an
//! OpenID access token, a minted JWT or a delegated delay id: not for a good request, not for a
//! refused one, not while it restarts and sends a delayed leave.
//!
//! Needs the local stack (`cargo xtask devstack up`) for real OpenID tokens.

mod common;

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
    // A file, not a pipe: nothing reads a pipe while the test runs, and trace logs would fill it.
    let log_path =
        std::env::temp_dir().join(format!("matrixrtc-auth-logs-{}.txt", std::process::id()));
    let log_file = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_matrixrtc-auth"))
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
        .env(
            "LIVEKIT_CS_API_URL_OVERRIDES",
            format!("{}={}", stack.server_name, stack.homeserver_url),
        )
        .env("MATRIXRTC_AUTH_OUTBOUND_ALLOW", "127.0.0.1")
        .env("LIVEKIT_SANITY_CHECK_INTERVAL_SECONDS", "1")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("the service binary starts");
    let mut guard = KillOnDrop(Some(child));
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let http = common::http();
    loop {
        let health = http.get(format!("{base}/healthz")).send().await;
        if health.is_ok_and(|response| response.status() == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the service did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let openid = call.hs.openid_token(&call.alice).await.unwrap();
    let access_token = openid["access_token"].as_str().unwrap().to_owned();
    // A delegation whose participant never connects: after its 2 s the service sends the
    // leave, which the homeserver does not know (404).
    let delay_id = "syd_delay-id-that-must-not-be-logged";
    let good = post(
        &format!("{base}/sfu/get"),
        json!({"room": call.room_id, "openid_token": openid, "device_id": "ALICEDEV",
               "delay_id": delay_id, "delay_timeout": 2000})
        .to_string(),
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
    assert_eq!((refused.status.as_u16(), refused.errcode()), (401, "M_UNAUTHORIZED"));
    // A token naming a homeserver that cannot be reached, then one the outbound policy refuses.
    let sfu_get = |token: &str, server_name: &str| {
        let body = json!({
            "room": call.room_id, "device_id": "D",
            "openid_token": {"access_token": token, "token_type": "Bearer", "matrix_server_name": server_name, "expires_in": 3600},
        });
        let url = format!("{base}/sfu/get");
        async move { post(&url, body.to_string()).await }
    };
    let unreachable_token = "unreachable-token-that-must-not-be-logged";
    let unreachable = sfu_get(unreachable_token, "127.0.0.1:1").await;
    assert_eq!((unreachable.status.as_u16(), unreachable.errcode()), (502, "M_UNKNOWN"));
    let internal_token = "internal-token-that-must-not-be-logged";
    let internal = sfu_get(internal_token, "169.254.169.254").await;
    assert_eq!((internal.status.as_u16(), internal.errcode()), (401, "M_UNAUTHORIZED"));

    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut child = guard.0.take().unwrap();
    nix_terminate(&child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the service stops cleanly on SIGTERM: {status}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);

    assert!(logs.contains("issued LiveKit token"), "the logs are there at all:\n{logs}");
    assert!(logs.contains("OpenID verification failed"), "{logs}");
    // The operator learns why a verification was refused.
    assert!(
        logs.lines().any(|l| l.contains("refused by the outbound policy")
            && l.contains("169.254.169.254, a link-local address")
            && l.contains("MATRIXRTC_AUTH_OUTBOUND_ALLOW")),
        "{logs}"
    );
    assert!(logs.contains("the leave was already sent or cancelled"), "{logs}");
    for (what, value) in [
        ("API secret", secret),
        ("OpenID token", access_token.as_str()),
        ("refused OpenID token", refused_token),
        ("unreachable OpenID token", unreachable_token),
        ("internal OpenID token", internal_token),
        ("JWT signature", jwt.rsplit('.').next().unwrap()),
        ("delay id", delay_id),
    ] {
        assert!(!logs.contains(value), "the {what} appears in the logs");
    }
}

/// Kills the child when the test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn nix_terminate(child: &std::process::Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}
