//! The abuse limits against the real service: the per-client rate limit (a burst, then 429 with
//! `Retry-After`, then recovery), the per-homeserver limit, the cap on concurrent verifications,
//! and the verification cache (a burst from one member costs its homeserver one request). The
//! homeserver is a small HTTP server in this process that counts userinfo requests.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Answer, post, raw_config, spawn_service};
use matrixrtc_auth::config::RawConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A homeserver vouching for `@alice:example.test` after `delay`, counting userinfo requests.
async fn counting_homeserver(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let body = r#"{"sub":"@alice:example.test"}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{address}"), count)
}

async fn spawn(homeserver: &str, configure: impl FnOnce(&mut RawConfig)) -> String {
    let mut raw =
        raw_config("ws://127.0.0.1:9", "key", "secret-secret-secret-secret-secret", "other.test");
    raw.federation_overrides = vec![format!("example.test={homeserver}")];
    raw.delegation = Some(false);
    configure(&mut raw);
    spawn_service(raw).await
}

/// A `/sfu/get` request with the OpenID token `token` of `example.test` (a homeserver without
/// full access: no room is created on the SFU, which these tests do not run).
fn request(token: &str) -> String {
    json!({
        "room": "!room:example.test", "device_id": "DEV",
        "openid_token": {"access_token": token, "token_type": "Bearer", "matrix_server_name": "example.test", "expires_in": 3600},
    })
    .to_string()
}

fn retry_after(answer: &Answer) -> u64 {
    let header = answer.headers.get("retry-after").expect("a Retry-After header");
    header.to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_client_gets_its_burst_then_429_then_recovers() {
    let (homeserver, _) = counting_homeserver(Duration::ZERO).await;
    // Burst 3, then one request every 2 s.
    let service = spawn(&homeserver, |raw| {
        raw.client_burst = Some(3);
        raw.client_rate_per_minute = Some(30);
    })
    .await;
    let url = format!("{service}/sfu/get");
    for _ in 0..3 {
        let answer = post(&url, request("t")).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    let limited = post(&url, request("t")).await;
    assert_eq!((limited.status.as_u16(), limited.errcode()), (429, "M_LIMIT_EXCEEDED"));
    let wait = limited.body["retry_after_ms"].as_u64().unwrap();
    assert!((1..=2000).contains(&wait), "{wait}");
    assert_eq!(retry_after(&limited), wait.div_ceil(1000));
    // The limit comes before the body is read, on both token routes.
    let other_route = post(&format!("{service}/get_token"), "{}").await;
    assert_eq!(other_route.status, 429, "the limit covers both token routes");
    // Health checks and CORS preflights are not limited.
    let health = common::http().get(format!("{service}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    let recovered = post(&url, request("t")).await;
    assert_eq!(recovered.status, 200, "{:?}", recovered.body);
    assert_eq!(post(&url, request("t")).await.status, 429);
}

#[tokio::test]
async fn a_burst_from_one_member_costs_its_homeserver_one_request() {
    let (homeserver, count) = counting_homeserver(Duration::from_millis(300)).await;
    let service = spawn(&homeserver, |_| {}).await;
    let url = format!("{service}/sfu/get");
    // Ten at once while the first verification runs, then five more after it.
    let burst = (0..10).map(|_| post(&url, request("member-token")));
    for answer in futures_util::future::join_all(burst).await {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    for _ in 0..5 {
        assert_eq!(post(&url, request("member-token")).await.status, 200);
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Another token is verified on its own.
    assert_eq!(post(&url, request("other-token")).await.status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // Without the cache every request is a verification.
    let (homeserver, count) = counting_homeserver(Duration::ZERO).await;
    let uncached = spawn(&homeserver, |raw| raw.verification_cache_seconds = Some(0)).await;
    for _ in 0..3 {
        assert_eq!(post(&format!("{uncached}/sfu/get"), request("t")).await.status, 200);
    }
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_homeserver_gets_its_burst_of_verifications_and_cached_tokens_still_pass() {
    let (homeserver, count) = counting_homeserver(Duration::ZERO).await;
    let service = spawn(&homeserver, |raw| {
        raw.homeserver_burst = Some(2);
        raw.homeserver_rate_per_minute = Some(60);
    })
    .await;
    let url = format!("{service}/sfu/get");
    assert_eq!(post(&url, request("a")).await.status, 200);
    assert_eq!(post(&url, request("b")).await.status, 200);
    let limited = post(&url, request("c")).await;
    assert_eq!((limited.status.as_u16(), limited.errcode()), (429, "M_LIMIT_EXCEEDED"));
    assert_eq!(retry_after(&limited), 1);
    assert_eq!(count.load(Ordering::SeqCst), 2, "the limited request reached nobody");
    // Tokens verified before cost the homeserver nothing: not limited.
    assert_eq!(post(&url, request("a")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&url, request("c")).await.status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn verifications_beyond_the_cap_wait_then_get_503() {
    let (homeserver, count) = counting_homeserver(Duration::from_secs(3)).await;
    let service = spawn(&homeserver, |raw| raw.max_concurrent_verifications = Some(1)).await;
    let url = format!("{service}/sfu/get");
    let slow = tokio::spawn({
        let url = url.clone();
        async move { post(&url, request("first")).await }
    });
    while count.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let busy = post(&url, request("second")).await;
    assert_eq!((busy.status.as_u16(), busy.errcode()), (503, "M_UNKNOWN"));
    assert_eq!(retry_after(&busy), 1);
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited for a slot first");
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
