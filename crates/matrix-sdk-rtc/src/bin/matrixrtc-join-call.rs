//! `matrixrtc-join-call`: joins the call of a Matrix room with this device's own membership
//! (delayed leave included) and stays until SIGINT or SIGTERM, then leaves.
//!
//! A small tool to put a member in a call from a shell, and what the ghost test kills with
//! SIGKILL. Configured by environment variables:
//! `HOMESERVER_URL`, `MATRIX_USERNAME`, `MATRIX_PASSWORD`, `MATRIX_DEVICE_ID` (optional),
//! `ROOM_ID`, `LIVEKIT_SERVICE_URL` (optional: discovered from the homeserver), `RUST_LOG`.
//! Prints `joined` on stdout once the membership is in the room.

#![recursion_limit = "256"]

use std::time::Duration;

use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::OwnedRoomId;
use matrix_sdk_rtc::{MembershipTimings, OwnMembership, livekit_service_url};

fn env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(Some(value.trim().to_owned())),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

fn required(name: &str) -> Result<String, String> {
    env(name)?.ok_or_else(|| format!("{name} must be set"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let homeserver = required("HOMESERVER_URL")?;
    let username = required("MATRIX_USERNAME")?;
    let password = required("MATRIX_PASSWORD")?;
    let room_id: OwnedRoomId = required("ROOM_ID")?.parse().map_err(|e| format!("ROOM_ID: {e}"))?;

    let client = matrix_sdk::Client::builder()
        .homeserver_url(&homeserver)
        .build()
        .await
        .map_err(|e| format!("cannot build the Matrix client: {e}"))?;
    let mut login = client.matrix_auth().login_username(&username, &password);
    let device_id = env("MATRIX_DEVICE_ID")?;
    if let Some(device_id) = &device_id {
        login = login.device_id(device_id);
    }
    login.send().await.map_err(|e| format!("login failed: {e}"))?;
    client.sync_once(SyncSettings::default()).await.map_err(|e| format!("sync failed: {e}"))?;
    let sync_client = client.clone();
    tokio::spawn(async move {
        if let Err(error) = sync_client.sync(SyncSettings::default()).await {
            tracing::error!(%error, "sync stopped");
        }
    });
    let room = client.get_room(&room_id).ok_or_else(|| format!("not joined to {room_id}"))?;
    let service_url = match env("LIVEKIT_SERVICE_URL")? {
        Some(url) => url,
        None => livekit_service_url(&client).await.map_err(|e| e.to_string())?,
    };
    let membership = OwnMembership::join(&room, service_url, MembershipTimings::default())
        .await
        .map_err(|e| e.to_string())?;
    membership.wait_joined(Duration::from_secs(30)).await.map_err(|e| e.to_string())?;
    println!("joined");

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    membership.leave().await.map_err(|e| e.to_string())?;
    println!("left");
    Ok(())
}
