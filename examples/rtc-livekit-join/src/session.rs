//! The Matrix side of starting up: the client and its store, the session (restored or a
//! password login), the room (joined by id or alias), the first sync.
//!
//! With the `sqlite` feature the session and the device's keys live in
//! `<store dir>/<homeserver>/<user>/<device>/` (created 0700; the session file 0600), and the
//! last device used is remembered, so every run is the same device. Without it the store is in
//! memory and each run logs in anew.

use std::path::{Path, PathBuf};
use std::time::Duration;

use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::{OwnedRoomId, OwnedServerName};
use matrix_sdk::{Client, Room};

use crate::config::Config;
use crate::failure::Failure;

/// The device display name new logins get.
const DEVICE_NAME: &str = "example-rtc-livekit-join";

/// Builds the client and logs it in (restoring the stored session when there is a valid one).
pub(crate) async fn login(config: &Config) -> Result<Client, Failure> {
    let http = matrix_sdk_rtc_livekit::tls::http_client()
        .map_err(|e| Failure::internal(format!("cannot build the HTTP client: {e}")))?;
    let builder =
        Client::builder().homeserver_url(config.homeserver_url.as_str()).http_client(http);
    #[cfg(feature = "sqlite")]
    {
        login_with_store(config, builder).await
    }
    #[cfg(not(feature = "sqlite"))]
    {
        tracing::warn!(
            "built without the sqlite feature: the session and the device's keys are kept in memory, \
             so every run logs in as a new device (or reuses MATRIX_DEVICE_ID with new keys)"
        );
        let client = builder.build().await.map_err(|e| Failure::from_client_build(config, &e))?;
        password_login(config, &client, config.device_id.as_deref()).await?;
        Ok(client)
    }
}

#[cfg(feature = "sqlite")]
async fn login_with_store(
    config: &Config,
    builder: matrix_sdk::ClientBuilder,
) -> Result<Client, Failure> {
    use matrix_sdk::authentication::matrix::MatrixSession;
    use matrix_sdk::store::RoomLoadSettings;

    let user_dir = user_dir(config);
    let mut device_id = match &config.device_id {
        Some(device) => device.clone(),
        None => std::fs::read_to_string(user_dir.join("last-device"))
            .ok()
            .map(|d| d.trim().to_owned())
            .filter(|d| valid_device_id(d))
            .unwrap_or_else(new_device_id),
    };
    let stored: Option<MatrixSession> =
        std::fs::read(user_dir.join(&device_id).join("session.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let session = match stored {
        Some(session) if session_is_valid(config, &session).await? => Some(session),
        Some(_) if config.device_id.is_none() => {
            // Logged out: its keys are gone on the server. A new device, in a store of its own.
            device_id = new_device_id();
            tracing::info!(device = %device_id, "the stored session was logged out; logging in as a new device");
            None
        }
        Some(_) => {
            tracing::info!("the stored session was logged out; logging in again");
            None
        }
        None => None,
    };
    let dir = user_dir.join(&device_id);
    private_dir(&dir).map_err(|e| {
        Failure::config(format!(
            "cannot create the store directory {}: {e}; set MATRIX_STORE_DIR to a writable place",
            dir.display()
        ))
    })?;
    let client = builder
        .sqlite_store(dir.join("matrix"), None)
        .build()
        .await
        .map_err(|e| Failure::from_client_build(config, &e))?;
    match session {
        Some(session) => {
            client
                .matrix_auth()
                .restore_session(session, RoomLoadSettings::default())
                .await
                .map_err(|e| Failure::from_sdk(config, "restoring the stored session", &e))?;
            tracing::info!(
                user = %client.user_id().map(ToString::to_string).unwrap_or_default(),
                device = %device_id,
                "logged in (stored session)"
            );
        }
        None => {
            password_login(config, &client, Some(&device_id)).await?;
            if let Some(session) = client.matrix_auth().session() {
                let file = dir.join("session.json");
                let bytes = serde_json::to_vec(&session)
                    .map_err(|e| Failure::internal(format!("cannot serialise the session: {e}")))?;
                write_private(&file, &bytes).map_err(|e| {
                    Failure::config(format!("cannot write {}: {e}", file.display()))
                })?;
            }
        }
    }
    let _ = std::fs::write(user_dir.join("last-device"), &device_id);
    Ok(client)
}

/// Whether the homeserver still accepts a stored session's access token (`whoami`).
#[cfg(feature = "sqlite")]
async fn session_is_valid(
    config: &Config,
    session: &matrix_sdk::authentication::matrix::MatrixSession,
) -> Result<bool, Failure> {
    let http = matrix_sdk_rtc_livekit::tls::http_client()
        .map_err(|e| Failure::internal(format!("cannot build the HTTP client: {e}")))?;
    let url = matrix_sdk_rtc_livekit::endpoint::join(
        &config.homeserver_url,
        "_matrix/client/v3/account/whoami",
    );
    let response = http
        .get(url)
        .bearer_auth(&session.tokens.access_token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| {
            Failure::from_http(
                config,
                "checking the stored session",
                &matrix_sdk::HttpError::Reqwest(e.without_url()),
            )
        })?;
    match response.status().as_u16() {
        200 => Ok(true),
        401 | 403 => Ok(false),
        status => Err(Failure {
            kind: crate::failure::Kind::Network,
            message: format!("checking the stored session: the homeserver answered HTTP {status}"),
        }),
    }
}

async fn password_login(
    config: &Config,
    client: &Client,
    device_id: Option<&str>,
) -> Result<(), Failure> {
    let mut login = client
        .matrix_auth()
        .login_username(&config.username, config.password.expose())
        .initial_device_display_name(DEVICE_NAME);
    if let Some(device_id) = device_id {
        login = login.device_id(device_id);
    }
    match login.send().await {
        Ok(response) => {
            tracing::info!(user = %response.user_id, device = %response.device_id, "logged in");
            Ok(())
        }
        Err(error) => Err(Failure::from_login(config, &error)),
    }
}

/// Joins the configured room (unless we are in it), then does the first sync.
pub(crate) async fn open_room(config: &Config, client: &Client) -> Result<Room, Failure> {
    // What the store knows (a restored session) or a quick first sync tells.
    let first = client
        .sync_once(SyncSettings::default().timeout(Duration::ZERO))
        .await
        .map_err(|e| Failure::from_sdk(config, "the first sync", &e))?;
    tracing::debug!(next_batch = %first.next_batch, "first sync done");
    let (room_id, mut via): (Option<OwnedRoomId>, Vec<OwnedServerName>) =
        match <&matrix_sdk::ruma::RoomId>::try_from(config.room.as_str()) {
            Ok(room_id) => (Some(room_id.to_owned()), config.via_servers.clone()),
            Err(_) => {
                let alias = <&matrix_sdk::ruma::RoomAliasId>::try_from(config.room.as_str())
                    .map_err(|e| Failure::config(format!("ROOM_ID: {e}")))?;
                match client.resolve_room_alias(alias).await {
                    Ok(resolved) => {
                        let mut via = config.via_servers.clone();
                        via.extend(resolved.servers);
                        (Some(resolved.room_id), via)
                    }
                    Err(error) => return Err(Failure::from_alias(config, &error)),
                }
            }
        };
    via.dedup();
    let room_id = room_id.expect("a room id or a resolved alias");
    if let Some(room) = client.get_room(&room_id)
        && room.state() == matrix_sdk::RoomState::Joined
    {
        return Ok(room);
    }
    let room = client
        .join_room_by_id_or_alias(&matrix_sdk::ruma::OwnedRoomOrAliasId::from(room_id), &via)
        .await
        .map_err(|e| Failure::from_join(config, &e))?;
    // The join's state arrives with the next sync.
    client
        .sync_once(SyncSettings::default().timeout(Duration::ZERO))
        .await
        .map_err(|e| Failure::from_sdk(config, "the sync after joining", &e))?;
    Ok(room)
}

/// `<store dir>/<homeserver host_port>/<user>`.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn user_dir(config: &Config) -> PathBuf {
    let host = config.homeserver_url.host_str().unwrap_or("homeserver");
    let port = config.homeserver_url.port_or_known_default().unwrap_or(0);
    config.store_dir.join(safe_name(&format!("{host}_{port}"))).join(safe_name(&config.username))
}

/// A file name from any text: letters, digits, `.`, `-`, `_`, `@`; the rest becomes `_`.
fn safe_name(text: &str) -> String {
    let name: String =
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
    if name.is_empty() || name.starts_with('.') { format!("_{name}") } else { name }
}

#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A device id for a first login, so that the store can be named after it before logging in.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn new_device_id() -> String {
    let letters: String = (0..8).map(|_| fastrand::uppercase()).collect();
    format!("RTCBOT{letters}")
}

/// Creates `dir` (and its parents) readable by us alone.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path`, readable by us alone, replacing it atomically.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names_are_safe() {
        assert_eq!(safe_name("@bot:example.org"), "@bot_example.org");
        assert_eq!(safe_name("../etc"), "_.._etc");
        assert_eq!(safe_name(""), "_");
        assert!(valid_device_id(&new_device_id()));
        assert!(!valid_device_id("../x"));
    }

    #[test]
    fn private_files_and_folders() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = std::env::temp_dir().join(format!("rtc-join-test-{}", std::process::id()));
        let dir = root.join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let file = dir.join("session.json");
        write_private(&file, b"{}").unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(root).unwrap();
    }
}
