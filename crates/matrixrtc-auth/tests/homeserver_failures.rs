//! Homeservers that fail: unreachable, slow, answering garbage, or vouching for a foreign user.
//! The homeserver side is a small TCP server in this process; the service is the real one.

mod common;

use std::time::Duration;

use common::{post, raw_config, spawn_service};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A homeserver that answers every request with `response` (or never, when `None`).
async fn fake_homeserver(response: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                match response {
                    Some(body) => {
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    format!("http://{address}")
}

async fn service_for(homeserver: &str, timeout_ms: u64) -> String {
    let mut raw =
        raw_config("ws://127.0.0.1:9", "key", "secret-secret-secret-secret-secret", "example.test");
    raw.federation_overrides = vec![format!("example.test={homeserver}")];
    raw.outbound_timeout_ms = timeout_ms;
    spawn_service(raw).await
}

fn request() -> String {
    json!({
        "room": "!room:example.test", "device_id": "DEV",
        "openid_token": {"access_token": "tok", "token_type": "Bearer", "matrix_server_name": "example.test", "expires_in": 3600},
    })
    .to_string()
}

#[tokio::test]
async fn unreachable_homeserver_is_bad_gateway() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let service = service_for(&format!("http://{closed}"), 2000).await;
    let answer = post(&format!("{service}/sfu/get"), request()).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (502, "M_UNKNOWN"));
}

#[tokio::test]
async fn slow_homeserver_is_gateway_timeout() {
    let homeserver = fake_homeserver(None).await;
    let service = service_for(&homeserver, 300).await;
    let started = std::time::Instant::now();
    let answer = post(&format!("{service}/sfu/get"), request()).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (504, "M_UNKNOWN"));
    assert!(started.elapsed() < Duration::from_secs(10), "the timeout applies");
}

#[tokio::test]
async fn garbage_from_the_homeserver_is_unauthorized() {
    for garbage in ["{}", "not json", "{\"sub\": 5}", "{\"sub\": \"nobody\"}"] {
        let service = service_for(&fake_homeserver(Some(garbage)).await, 2000).await;
        let answer = post(&format!("{service}/sfu/get"), request()).await;
        assert_eq!(
            (answer.status.as_u16(), answer.errcode()),
            (401, "M_UNAUTHORIZED"),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn homeserver_vouching_for_a_foreign_user_is_unauthorized() {
    let service =
        service_for(&fake_homeserver(Some(r#"{"sub": "@admin:matrix.org"}"#)).await, 2000).await;
    let answer = post(&format!("{service}/sfu/get"), request()).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (401, "M_UNAUTHORIZED"));
}

#[tokio::test]
async fn hostile_server_names_are_refused_without_a_request() {
    let service = service_for("http://127.0.0.1:9", 2000).await;
    for name in ["evil.example/path?", "user@host", "a b"] {
        let body = json!({
            "room": "!r:x", "device_id": "DEV",
            "openid_token": {"access_token": "tok", "token_type": "Bearer", "matrix_server_name": name, "expires_in": 1},
        });
        let answer = post(&format!("{service}/sfu/get"), body.to_string()).await;
        assert_eq!((answer.status.as_u16(), answer.errcode()), (401, "M_UNAUTHORIZED"), "{name}");
    }
}
