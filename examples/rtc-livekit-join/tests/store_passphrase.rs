//! `MATRIX_STORE_PASSPHRASE` against the real stack: with it the program logs in and its store
//! is encrypted at rest (the access token is in no file under the store directory, not even in
//! the sealed session file's bytes); the store does not open without it or with another one
//! (exit code 2, a line naming the store, no new device on the homeserver); with it again the
//! program is the same device, from its stored session. An unencrypted store warns once and
//! refuses a passphrase, untouched. Needs `cargo xtask devstack up`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Bot, STDOUT_MARK, Setup, field};
use matrix_sdk_store_encryption::{EncryptedValueBase64, StoreCipher};
use nix::sys::signal::Signal;
use rtc_test_support::User;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const PASSPHRASE: &str = "correct horse battery staple";

/// The setup's environment with `passphrase` (`None`: unset), in the room but not in a call:
/// nobody calls, so the program waits there.
fn env(setup: &Setup, passphrase: Option<&str>) -> Vec<(&'static str, String)> {
    setup.env_with(&[
        ("CALL_PRESENCE", "follow".into()),
        ("MATRIX_STORE_PASSPHRASE", passphrase.unwrap_or_default().into()),
    ])
}

/// Runs the program until it is in the room, then stops it; its login line and its log.
async fn run_into_the_room(env: &[(&'static str, String)]) -> (String, String) {
    let mut bot = Bot::start(env);
    let login = bot.wait_line(WAIT, |l| l.contains("logged in") && l.contains("device=")).await;
    bot.wait_line(WAIT, |l| l.contains("milestone=\"room\"")).await;
    eprintln!("in the room after {:?}: {login}", bot.started.elapsed());
    bot.signal(Signal::SIGTERM);
    assert_eq!(bot.wait_exit(Duration::from_secs(10)).await.code(), Some(0), "{}", bot.log());
    (login, bot.log())
}

/// Runs the program (with `args`), which must refuse to start: exit code 2 (configuration,
/// which the service does not restart) before any login. Its log.
async fn refused(env: &[(&'static str, String)], args: &[&str]) -> String {
    let mut bot = Bot::start_with_args(env, args);
    let status = bot.wait_exit(WAIT).await;
    let log = bot.log();
    eprintln!("exit {:?} after {:?}; the log:\n{log}", status.code(), bot.started.elapsed());
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(!bot.logged("logged in"), "no login: {log}");
    assert!(!log.contains(PASSPHRASE), "the passphrase is never logged: {log}");
    log
}

/// The bot's devices, as the homeserver knows them.
async fn devices(setup: &Setup) -> Vec<String> {
    let answer = setup.hs.get(&setup.bot, "/_matrix/client/v3/devices").await.unwrap();
    let mut devices: Vec<String> = answer["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
        .collect();
    devices.sort();
    devices
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The files under `dir` whose bytes contain `text`.
fn files_containing(dir: &Path, text: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|file| {
            let bytes = std::fs::read(file).unwrap();
            bytes.windows(text.len()).any(|w| w == text.as_bytes())
        })
        .collect()
}

/// The one file named `name` under `dir`.
fn the_file(dir: &Path, name: &str) -> PathBuf {
    let found: Vec<_> = files(dir).into_iter().filter(|f| f.file_name().unwrap() == name).collect();
    assert_eq!(found.len(), 1, "one {name}: {found:?}");
    found.into_iter().next().unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The session in `session.enc`, opened with `passphrase` as matrix-sdk's store crate does.
fn sealed_session(file: &Path, passphrase: &str) -> Value {
    let sealed: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let key: Vec<u8> = serde_json::from_value(sealed["key"].clone()).unwrap();
    let session: EncryptedValueBase64 = serde_json::from_value(sealed["session"].clone()).unwrap();
    let cipher = StoreCipher::import(passphrase, &key).expect("the passphrase opens it");
    serde_json::from_slice(&cipher.decrypt_value_base64_data(session).unwrap()).unwrap()
}

#[tokio::test]
async fn an_encrypted_store_opens_with_its_passphrase_only_and_keeps_the_device() {
    let setup = Setup::new("pass").await;
    let (login, log) = run_into_the_room(&env(&setup, Some(PASSPHRASE))).await;
    assert!(login.contains("logged in user="), "a password login: {login}");
    let device = field(&login, "device").unwrap().to_owned();
    assert!(!log.contains("MATRIX_STORE_PASSPHRASE is not set"), "no warning: {log}");
    assert!(!log.contains(PASSPHRASE), "the passphrase is never logged");

    // The store: matrix-sdk's databases and the sealed session, private.
    let sealed = the_file(&setup.store, "session.enc");
    let device_dir = sealed.parent().unwrap().to_owned();
    assert!(device_dir.ends_with(&device), "{}", device_dir.display());
    assert_eq!((mode(&device_dir), mode(&sealed)), (0o700, 0o600));
    let crypto = device_dir.join("matrix/matrix-sdk-crypto.sqlite3");
    assert!(std::fs::metadata(&crypto).unwrap().len() > 0, "the Olm account is stored");
    assert!(files(&setup.store).iter().all(|f| !f.ends_with("session.json")));

    // The sealed session is the program's real one: its token works, as this device.
    let session = sealed_session(&sealed, PASSPHRASE);
    let token = session["access_token"].as_str().unwrap().to_owned();
    assert_eq!(session["device_id"], device.as_str());
    let user = User {
        user_id: setup.bot.user_id.clone(),
        device_id: device.clone(),
        access_token: token.clone(),
    };
    let whoami = setup.hs.get(&user, "/_matrix/client/v3/account/whoami").await.unwrap();
    assert_eq!(whoami["device_id"], device.as_str(), "{whoami}");
    // …and neither it nor the passphrase is anywhere in the store in clear.
    let clear = |setup: &Setup| {
        assert_eq!(files_containing(&setup.store, &token), Vec::<PathBuf>::new(), "the token");
        assert_eq!(files_containing(&setup.store, PASSPHRASE), Vec::<PathBuf>::new());
    };
    clear(&setup);
    let known = devices(&setup).await;
    assert!(known.contains(&device), "{known:?}");

    // Without the passphrase: a clear refusal, and no new device.
    let log = refused(&env(&setup, None), &[]).await;
    let line = log.lines().last().unwrap();
    assert!(line.contains("is encrypted, and MATRIX_STORE_PASSPHRASE is not set"), "{log}");
    assert!(line.contains(&device_dir.display().to_string()), "names the store: {line}");
    assert!(!log.contains("is not encrypted at rest"), "no contradicting warning: {log}");
    // With another one: the same, in its own words.
    let log = refused(&env(&setup, Some("Correct horse battery staple")), &[]).await;
    let line = log.lines().last().unwrap();
    assert!(line.contains("MATRIX_STORE_PASSPHRASE does not open the Matrix store"), "{log}");
    assert!(line.contains(&device_dir.display().to_string()), "names the store: {line}");
    // `--check` fails its login step so too.
    let log = refused(&env(&setup, Some("wrong")), &["--check"]).await;
    assert!(log.contains(&format!("{STDOUT_MARK}check login: FAILED")), "{log}");
    assert_eq!(devices(&setup).await, known, "no device was added");

    // With the passphrase again: the same device, from the stored session.
    let (login, log) = run_into_the_room(&env(&setup, Some(PASSPHRASE))).await;
    assert!(login.contains("logged in (stored session)"), "{login}");
    assert_eq!(field(&login, "device"), Some(device.as_str()));
    assert!(!log.contains("logged in user="), "no password login: {log}");
    assert_eq!(devices(&setup).await, known);
    clear(&setup);
}

#[tokio::test]
async fn an_unencrypted_store_warns_once_and_refuses_a_passphrase_untouched() {
    let setup = Setup::new("nopass").await;
    let (login, log) = run_into_the_room(&env(&setup, None)).await;
    let device = field(&login, "device").unwrap().to_owned();
    let warnings: Vec<_> =
        log.lines().filter(|l| l.contains("MATRIX_STORE_PASSPHRASE is not set")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("not encrypted at rest"));
    let session = the_file(&setup.store, "session.json");
    assert_eq!((mode(session.parent().unwrap()), mode(&session)), (0o700, 0o600));
    // Unencrypted, as the warning says: the token is in the session file, in clear.
    let stored: Value = serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap();
    let token = stored["access_token"].as_str().unwrap();
    assert!(files_containing(&setup.store, token).contains(&session));
    let known = devices(&setup).await;

    let log = refused(&env(&setup, Some(PASSPHRASE)), &[]).await;
    let line = log.lines().last().unwrap();
    assert!(
        line.contains("was created without a passphrase and is not encrypted, but MATRIX_STORE_PASSPHRASE is set"),
        "{log}"
    );
    assert!(line.contains(&session.parent().unwrap().display().to_string()), "{line}");
    assert_eq!(devices(&setup).await, known, "no device was added");

    // The store was left as it was: without the passphrase it is the same device again.
    let (login, _) = run_into_the_room(&env(&setup, None)).await;
    assert!(login.contains("logged in (stored session)"), "{login}");
    assert_eq!(field(&login, "device"), Some(device.as_str()));
}
