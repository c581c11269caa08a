//! `cargo xtask demo`: the local stack, and a smoke check that shows it working end to end.

use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rtc_test_support::Homeserver;
use serde_json::{Value, json};

use crate::devstack;

/// Starts the stack and walks through what a MatrixRTC client does before it joins a call.
pub(crate) async fn run() -> anyhow::Result<()> {
    let stack = devstack::up().await?;
    devstack::print_status(&stack);
    println!();
    println!("smoke check:");

    let hs = Homeserver::new(&stack);
    let alice = hs.register_unique("alice").await?;
    let bob = hs.register_unique("bob").await?;
    println!("  registered {} and {}", alice.user_id, bob.user_id);
    let room_id = hs.create_call_room(&alice, &[&bob]).await?;
    hs.join(&bob, &room_id).await?;
    println!("  created call room {room_id}, {} joined", bob.user_id);

    let transports =
        hs.get(&alice, "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports").await?;
    let service_url = transports["rtc_transports"][0]["livekit_service_url"]
        .as_str()
        .context("the homeserver advertises no RTC transport")?
        .to_owned();
    println!("  homeserver advertises the LiveKit transport {service_url}");

    let openid = hs.openid_token(&alice).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let response = http
        .post(format!("{service_url}/sfu/get"))
        .json(&json!({"room": room_id, "openid_token": openid, "device_id": alice.device_id}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() {
        bail!("/sfu/get answered {status}: {body}");
    }
    let url = body["url"].as_str().context("no url in the /sfu/get answer")?;
    let jwt = body["jwt"].as_str().context("no jwt in the /sfu/get answer")?;
    let claims = jwt_claims(jwt)?;
    println!(
        "  /sfu/get issued a LiveKit token for identity {} in LiveKit room {}",
        claims["sub"], claims["video"]["room"]
    );

    // LiveKit's own check of a join token: 200 "success" when the token is valid and the room exists.
    let validate = format!("{}/rtc/validate", url.replacen("ws://", "http://", 1));
    let response = http.get(validate).query(&[("access_token", jwt)]).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("LiveKit refused the token: {status} {text}");
    }
    println!("  LiveKit at {url} accepts the token (the room exists: {text})");
    println!();
    println!("The stack keeps running; stop it with `cargo xtask devstack down`.");
    Ok(())
}

/// The claims of a JWT, without verifying it (the LiveKit server verifies it).
fn jwt_claims(jwt: &str) -> anyhow::Result<Value> {
    let payload = jwt.split('.').nth(1).context("not a JWT")?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).context("JWT payload is not base64url")?;
    Ok(serde_json::from_slice(&bytes)?)
}
