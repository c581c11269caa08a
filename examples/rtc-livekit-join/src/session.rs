//! The Matrix side of starting up: the client and its store, the session (restored or a
//! password login), the room (joined by id or alias), the first sync.
//!
//! With the `sqlite` feature the session and the device's keys live in
//! `<store dir>/<homeserver>/<user>/<device>/` (created 0700; the session file 0600), and the
//! last device used is remembered, so every run is the same device. Without it the store is in
//! memory and each run logs in anew.
//!
//! With `MATRIX_STORE_PASSPHRASE` the store is encrypted at rest: matrix-sdk's SQLite databases
//! (`matrix/`) with the passphrase, and the session (its access token) sealed in `session.enc`
//! (see [`SealedSession`]) instead of `session.json`. Without it, both are plain (a warning
//! says so). A store keeps what it was created with: it is checked before matrix-sdk opens it
//! (which would otherwise add encryption to an unencrypted store, or fail deep inside), and a
//! mismatch or a wrong passphrase ends the program with a configuration failure that names the
//! store, rather than a login as a new device.

use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "sqlite")]
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::{OwnedRoomId, OwnedServerName};
use matrix_sdk::{Client, Room};
#[cfg(feature = "sqlite")]
use zeroize::Zeroizing;

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

/// The session file of an unencrypted store: the session as JSON.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
const PLAIN_SESSION: &str = "session.json";
/// The session file of an encrypted store: a [`SealedSession`].
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
const SEALED_SESSION: &str = "session.enc";

#[cfg(feature = "sqlite")]
async fn login_with_store(
    config: &Config,
    builder: matrix_sdk::ClientBuilder,
) -> Result<Client, Failure> {
    use matrix_sdk::store::RoomLoadSettings;

    let user_dir = user_dir(config);
    let passphrase = config.store_passphrase.as_ref().map(crate::config::Secret::expose);
    let mut device_id = match &config.device_id {
        Some(device) => device.clone(),
        None => std::fs::read_to_string(user_dir.join("last-device"))
            .ok()
            .map(|d| d.trim().to_owned())
            .filter(|d| valid_device_id(d))
            .unwrap_or_else(new_device_id),
    };
    let existing = user_dir.join(&device_id);
    check_at_rest(&existing, &user_dir, passphrase.is_some())?;
    if passphrase.is_none() {
        tracing::warn!(
            store = %user_dir.display(),
            "MATRIX_STORE_PASSPHRASE is not set: the Matrix store (the session with its access token, \
             the device's encryption keys) is not encrypted at rest"
        );
    }
    let stored = read_session(&existing, &user_dir, passphrase)?;
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
    let client =
        builder.sqlite_store(dir.join("matrix"), passphrase).build().await.map_err(|e| {
            if passphrase.is_some() && is_store_encryption_error(&e) {
                wrong_passphrase(&dir, &user_dir)
            } else {
                Failure::from_client_build(config, &e)
            }
        })?;
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
                write_session(&dir, &session, passphrase)?;
            }
        }
    }
    let _ = std::fs::write(user_dir.join("last-device"), &device_id);
    Ok(client)
}

/// How a device's store keeps its data, as its files tell.
#[cfg(feature = "sqlite")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtRest {
    /// Nothing stored yet.
    New,
    /// Unencrypted: made without a passphrase.
    Plain,
    /// Encrypted with a passphrase.
    Encrypted,
    /// Some of each, which no run of the program makes.
    Mixed,
}

/// What the files of the store in `dir` say: the session file (`session.enc` or
/// `session.json`), and each of matrix-sdk's databases (see [`database_encrypted`]).
#[cfg(feature = "sqlite")]
fn at_rest(dir: &Path) -> Result<AtRest, String> {
    let mut encrypted = dir.join(SEALED_SESSION).exists();
    let mut plain = dir.join(PLAIN_SESSION).exists();
    let databases = dir.join("matrix");
    match std::fs::read_dir(&databases) {
        Ok(entries) => {
            for entry in entries {
                let path = entry.map_err(|e| format!("{}: {e}", databases.display()))?.path();
                if path.extension().is_none_or(|e| e != "sqlite3") {
                    continue;
                }
                match database_encrypted(&path).map_err(|e| format!("{}: {e}", path.display()))? {
                    Some(true) => encrypted = true,
                    Some(false) => plain = true,
                    None => {}
                }
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("{}: {error}", databases.display())),
    }
    Ok(match (encrypted, plain) {
        (false, false) => AtRest::New,
        (false, true) => AtRest::Plain,
        (true, false) => AtRest::Encrypted,
        (true, true) => AtRest::Mixed,
    })
}

/// Whether one of matrix-sdk-sqlite's databases is encrypted: `Some(true)` when its `kv` table
/// holds a `cipher` (the database's key, wrapped with the passphrase), `Some(false)` when it was
/// set up (its `version` is there) without one, `None` when it holds nothing yet.
#[cfg(feature = "sqlite")]
fn database_encrypted(file: &Path) -> rusqlite::Result<Option<bool>> {
    use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
    // Read and write, but never create: a read-only connection cannot always read a database in
    // WAL mode whose `-shm` file is gone. Only reads follow.
    let db = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let has_kv = db
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kv'", [], |_| {
            Ok(())
        })
        .optional()?
        .is_some();
    if !has_kv {
        return Ok(None);
    }
    let count = |sql: &str| db.query_row(sql, [], |row| row.get::<_, i64>(0));
    if count("SELECT count(*) FROM kv WHERE key = 'cipher'")? > 0 {
        Ok(Some(true))
    } else if count("SELECT count(*) FROM kv")? > 0 {
        Ok(Some(false))
    } else {
        Ok(None)
    }
}

/// The store in `dir` can be opened with (or without) a passphrase: matrix-sdk would add
/// encryption to an unencrypted store, and open an encrypted one without its passphrase only
/// to fail on its first read.
#[cfg(feature = "sqlite")]
fn check_at_rest(dir: &Path, user_dir: &Path, with_passphrase: bool) -> Result<(), Failure> {
    let at_rest =
        at_rest(dir).map_err(|e| Failure::config(format!("cannot read the Matrix store {e}")))?;
    let start_anew = format!(
        "to start anew instead, move {} away: the program then logs in as a new device",
        user_dir.display()
    );
    match (at_rest, with_passphrase) {
        (AtRest::Encrypted, false) => Err(Failure::config(format!(
            "the Matrix store {} is encrypted, and MATRIX_STORE_PASSPHRASE is not set: set it to \
             the passphrase the store was created with; {start_anew}",
            dir.display()
        ))),
        (AtRest::Plain, true) => Err(Failure::config(format!(
            "the Matrix store {} was created without a passphrase and is not encrypted, but \
             MATRIX_STORE_PASSPHRASE is set: unset it to go on with this store as it is; to \
             encrypt, move {} away and start with the passphrase: the program then logs in as a \
             new device",
            dir.display(),
            user_dir.display()
        ))),
        (AtRest::Mixed, _) => Err(Failure::config(format!(
            "the Matrix store {} has both encrypted and unencrypted parts; {start_anew}",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// The failure for a passphrase that does not open the store in `dir`.
#[cfg(feature = "sqlite")]
fn wrong_passphrase(dir: &Path, user_dir: &Path) -> Failure {
    Failure::config(format!(
        "MATRIX_STORE_PASSPHRASE does not open the Matrix store {}: it is not the passphrase the \
         store was created with (or the store is damaged); set the right one; to start anew \
         instead, move {} away: the program then logs in as a new device",
        dir.display(),
        user_dir.display()
    ))
}

/// Whether opening the store failed on its encryption (a wrong passphrase).
#[cfg(feature = "sqlite")]
fn is_store_encryption_error(error: &matrix_sdk::ClientBuildError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<matrix_sdk_store_encryption::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The stored session of the device whose store is `dir`: `session.json` without a passphrase,
/// `session.enc` with one. A file that does not parse counts as none (a password login
/// follows, as the same device); a sealed one the passphrase does not open is a failure.
#[cfg(feature = "sqlite")]
fn read_session(
    dir: &Path,
    user_dir: &Path,
    passphrase: Option<&str>,
) -> Result<Option<MatrixSession>, Failure> {
    let file = dir.join(if passphrase.is_some() { SEALED_SESSION } else { PLAIN_SESSION });
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(Failure::config(format!("cannot read {}: {error}", file.display())));
        }
    };
    // One written by an earlier version, or copied in: readable by us alone.
    let _ = restrict_to_owner(&file);
    let Some(passphrase) = passphrase else {
        return Ok(serde_json::from_slice(&bytes).ok());
    };
    match SealedSession::open(&bytes, passphrase) {
        Ok(session) => Ok(session),
        Err(WrongPassphrase) => Err(wrong_passphrase(dir, user_dir)),
    }
}

/// Writes the session of the device whose store is `dir` (0600), sealed with the passphrase
/// when there is one.
#[cfg(feature = "sqlite")]
fn write_session(
    dir: &Path,
    session: &MatrixSession,
    passphrase: Option<&str>,
) -> Result<(), Failure> {
    let json = Zeroizing::new(
        serde_json::to_vec(session)
            .map_err(|e| Failure::internal(format!("cannot serialise the session: {e}")))?,
    );
    let (file, bytes) = match passphrase {
        None => (dir.join(PLAIN_SESSION), json),
        Some(passphrase) => {
            let sealed = SealedSession::seal(json, passphrase)
                .map_err(|e| Failure::internal(format!("cannot seal the session: {e}")))?;
            let bytes = serde_json::to_vec(&sealed)
                .map_err(|e| Failure::internal(format!("cannot serialise the session: {e}")))?;
            (dir.join(SEALED_SESSION), Zeroizing::new(bytes))
        }
    };
    write_private(&file, &bytes)
        .map_err(|e| Failure::config(format!("cannot write {}: {e}", file.display())))
}

/// `session.enc`: the session (user, device, access token) sealed with the store's passphrase.
///
/// Why a file of its own rather than a value in the encrypted store: the session is needed
/// before the store is opened (to check that it is still valid, and to pick the device whose
/// store to open), and matrix-sdk-sqlite (0.18) writes the state store's custom values
/// (`StateStore::set_custom_value`) as given, unencrypted even in an encrypted store.
///
/// It is sealed the way matrix-sdk-sqlite seals each of its databases, with its own crate
/// (`matrix-sdk-store-encryption`), so there is no cryptography of our own here: a random key
/// (`StoreCipher`; XChaCha20-Poly1305 with a random nonce per value) encrypts the session, and
/// is kept encrypted with a key derived from the passphrase (PBKDF2-SHA256, 200 000 rounds, a
/// random salt; ChaCha20-Poly1305), which also tells a wrong passphrase from a right one.
#[cfg(feature = "sqlite")]
#[derive(serde::Serialize, serde::Deserialize)]
struct SealedSession {
    /// `StoreCipher::export`: the random key, encrypted with the passphrase's.
    key: Vec<u8>,
    /// The session as JSON, encrypted with the random key.
    session: matrix_sdk_store_encryption::EncryptedValueBase64,
}

/// The passphrase does not open a [`SealedSession`].
#[cfg(feature = "sqlite")]
#[derive(Debug)]
struct WrongPassphrase;

#[cfg(feature = "sqlite")]
impl SealedSession {
    /// Seals `json` (a session as JSON; zeroed here once encrypted).
    fn seal(
        mut json: Zeroizing<Vec<u8>>,
        passphrase: &str,
    ) -> Result<Self, matrix_sdk_store_encryption::Error> {
        let cipher = matrix_sdk_store_encryption::StoreCipher::new()?;
        // `encrypt_value_base64_data` zeroes what it is given.
        let session = cipher.encrypt_value_base64_data(std::mem::take(&mut *json))?;
        Ok(Self { key: cipher.export(passphrase)?, session })
    }

    /// The session in `bytes` (a sealed session as JSON); `Ok(None)` when it is damaged.
    fn open(bytes: &[u8], passphrase: &str) -> Result<Option<MatrixSession>, WrongPassphrase> {
        let Ok(sealed) = serde_json::from_slice::<Self>(bytes) else { return Ok(None) };
        let cipher = matrix_sdk_store_encryption::StoreCipher::import(passphrase, &sealed.key)
            .map_err(|_| WrongPassphrase)?;
        let Ok(json) = cipher.decrypt_value_base64_data(sealed.session) else { return Ok(None) };
        Ok(serde_json::from_slice(&Zeroizing::new(json)).ok())
    }
}

/// Whether the homeserver still accepts a stored session's access token (`whoami`).
#[cfg(feature = "sqlite")]
async fn session_is_valid(config: &Config, session: &MatrixSession) -> Result<bool, Failure> {
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

/// Makes `path` readable and writable by us alone.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
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

    /// A fresh directory for one test (tests run in parallel).
    #[cfg(feature = "sqlite")]
    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rtc-join-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[cfg(feature = "sqlite")]
    fn session() -> MatrixSession {
        serde_json::from_str(
            r#"{"user_id":"@bot:example.org","device_id":"RTCBOTTEST","access_token":"syt_the_access_token"}"#,
        )
        .unwrap()
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_sealed_session_hides_the_session() {
        let json = Zeroizing::new(serde_json::to_vec(&session()).unwrap());
        let sealed =
            serde_json::to_vec(&SealedSession::seal(json, "correct horse").unwrap()).unwrap();
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains("syt_the_access_token") && !text.contains("RTCBOTTEST"), "{text}");
        assert!(!text.contains("correct horse"));
        let opened = SealedSession::open(&sealed, "correct horse").unwrap().unwrap();
        assert_eq!(opened, session());
        // A wrong passphrase: `sessions_are_written_and_read_back_as_the_store_is_encrypted`.
        assert!(matches!(SealedSession::open(b"{", "correct horse"), Ok(None)), "damaged");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sessions_are_written_and_read_back_as_the_store_is_encrypted() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = test_dir("sessions");
        let (plain, sealed) = (root.join("plain"), root.join("sealed"));
        private_dir(&plain).unwrap();
        private_dir(&sealed).unwrap();
        let mode = |file: &Path| std::fs::metadata(file).unwrap().permissions().mode() & 0o777;

        write_session(&plain, &session(), None).unwrap();
        assert_eq!(mode(&plain.join(PLAIN_SESSION)), 0o600);
        assert_eq!(read_session(&plain, &root, None).unwrap(), Some(session()));
        // An older, looser file is made private.
        let file = plain.join(PLAIN_SESSION);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        read_session(&plain, &root, None).unwrap();
        assert_eq!(mode(&file), 0o600);

        write_session(&sealed, &session(), Some("pass phrase")).unwrap();
        assert!(!sealed.join(PLAIN_SESSION).exists());
        let file = sealed.join(SEALED_SESSION);
        assert_eq!(mode(&file), 0o600);
        let bytes = std::fs::read(&file).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("syt_the_access_token"));
        assert_eq!(read_session(&sealed, &root, Some("pass phrase")).unwrap(), Some(session()));
        let wrong = read_session(&sealed, &root, Some("other")).unwrap_err();
        assert_eq!(wrong.kind, crate::failure::Kind::Config);
        assert!(wrong.message.starts_with("MATRIX_STORE_PASSPHRASE does not open"), "{wrong}");
        assert!(wrong.message.contains(&sealed.display().to_string()), "{wrong}");
        std::fs::remove_dir_all(root).unwrap();
    }

    /// The databases of matrix-sdk-sqlite itself, made with and without a passphrase.
    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_store_says_whether_it_is_encrypted() {
        let root = test_dir("at-rest");
        let (new, plain, encrypted) = (root.join("new"), root.join("plain"), root.join("enc"));
        for (dir, passphrase) in [(&plain, None), (&encrypted, Some("pass phrase"))] {
            let store =
                matrix_sdk::SqliteStateStore::open(dir.join("matrix"), passphrase).await.unwrap();
            drop(store);
        }
        assert_eq!(at_rest(&new).unwrap(), AtRest::New);
        assert_eq!(at_rest(&plain).unwrap(), AtRest::Plain);
        assert_eq!(at_rest(&encrypted).unwrap(), AtRest::Encrypted);

        assert!(check_at_rest(&new, &root, true).is_ok());
        assert!(check_at_rest(&new, &root, false).is_ok());
        assert!(check_at_rest(&plain, &root, false).is_ok());
        assert!(check_at_rest(&encrypted, &root, true).is_ok());
        let locked = check_at_rest(&encrypted, &root, false).unwrap_err();
        assert_eq!(locked.kind, crate::failure::Kind::Config);
        assert!(
            locked.message.contains("is encrypted, and MATRIX_STORE_PASSPHRASE is not set"),
            "{locked}"
        );
        let open = check_at_rest(&plain, &root, true).unwrap_err();
        assert!(
            open.message.contains("not encrypted, but MATRIX_STORE_PASSPHRASE is set"),
            "{open}"
        );
        assert!(open.message.contains(&root.display().to_string()), "says what to move: {open}");

        // A session file says the same: an unencrypted one beside encrypted databases is odd.
        std::fs::write(encrypted.join(PLAIN_SESSION), b"{}").unwrap();
        assert_eq!(at_rest(&encrypted).unwrap(), AtRest::Mixed);
        assert!(check_at_rest(&encrypted, &root, true).is_err());
        private_dir(&new).unwrap();
        std::fs::write(new.join(SEALED_SESSION), b"{}").unwrap();
        assert_eq!(at_rest(&new).unwrap(), AtRest::Encrypted);
        std::fs::remove_dir_all(root).unwrap();
    }

    /// matrix-sdk's own failure for a wrong passphrase is recognised (when there is no sealed
    /// session to tell it first).
    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_wrong_passphrase_is_recognised_in_matrix_sdks_failure() {
        let root = test_dir("wrong");
        // One encrypted database is enough (each passphrase costs a key derivation).
        let store = matrix_sdk::SqliteStateStore::open(root.join("matrix"), Some("pass phrase"));
        drop(store.await.unwrap());
        let error = Client::builder()
            .homeserver_url("http://127.0.0.1:9")
            .sqlite_store(root.join("matrix"), Some("other"))
            .build()
            .await
            .unwrap_err();
        assert!(is_store_encryption_error(&error), "{error}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
