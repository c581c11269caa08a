//! `example-rtc-livekit-join`: a Rust program in a Matrix call, the way Element Call does it.
//!
//! It logs in (or restores its stored session), joins the room, and then follows the room's
//! MatrixRTC call: with `CALL_PRESENCE=follow` (the default) it joins with its own membership
//! when somebody else is in the call and leaves when the last one has left; with `always` it
//! starts the call and stays. In the call it publishes a camera or a test pattern through
//! LiveKit and decodes everybody's video. SIGINT and SIGTERM make it leave the call and
//! LiveKit and exit; a SIGKILL leaves no ghost either, because the homeserver sends our delayed
//! leave by itself. `--help` lists every setting.
#![recursion_limit = "256"]

mod check;
mod config;
mod failure;
mod media;
mod record;
mod session;
mod status;
#[cfg(feature = "experimental-widgets")]
mod widget;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser as _;
use matrix_sdk::LoopCtrl;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::error::ErrorKind as ApiErrorKind;
use matrix_sdk_rtc::{
    DriverOptions, DriverStatus, LiveKitRoomDriver, Presence, RoomCallObserver, RtcError,
    discover_transports, select_livekit_service_url,
};
use matrix_sdk_rtc_livekit::{
    ConnectorOptions, CredentialSource, LiveKitStr0mConnector, MediaEncryption,
};
use tokio::sync::mpsc;

use crate::config::{Args, Config};
use crate::failure::{Failure, Kind};
use crate::record::Recorder;
use crate::status::Clock;

/// How long leaving the call and LiveKit may take after SIGINT/SIGTERM before we exit anyway
/// (the delayed leave then removes the membership).
const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(2500);
/// Connection attempts that failed on the network before the first success, after which the
/// program gives up (a refusal or a configuration error ends it at once).
const NETWORK_ATTEMPTS: u32 = 3;

fn main() -> ExitCode {
    let clock = Clock(Instant::now());
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("{}", error.0);
            return ExitCode::from(Kind::Config as u8);
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return ExitCode::from(Kind::Internal as u8);
        }
    };
    let result = if config.check_only {
        runtime.block_on(check::run(&config))
    } else {
        runtime.block_on(run(config, clock))
    };
    // Tasks still running (a sync request in flight) do not hold the exit up.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            tracing::error!("{failure}");
            ExitCode::from(failure.kind as u8)
        }
    }
}

/// Says what happens to the call's media in `room`, and with `e2ee-per-participant` imports the
/// recovery key (the account's cross-signing keys and key backup).
async fn media_encryption(
    config: &Config,
    client: &matrix_sdk::Client,
    room: &matrix_sdk::Room,
) -> Result<(), Failure> {
    let encrypted = room.encryption_state().is_encrypted();
    if !cfg!(feature = "e2ee-per-participant") {
        if encrypted {
            tracing::warn!(
                "the room is encrypted: Element Call encrypts the call's media there, and this build has no \
                 media encryption (feature e2ee-per-participant), so other members will not see our video \
                 and we cannot decode theirs"
            );
        }
        return Ok(());
    }
    if let Some(key) = &config.e2ee.recovery_key {
        client.encryption().recovery().recover(key.expose()).await.map_err(|error| Failure {
            kind: Kind::Auth,
            message: format!(
                "MATRIX_RECOVERY_KEY was not accepted ({error}): give the account's recovery key \
                 (Element: Settings → Encryption), or leave it unset"
            ),
        })?;
        // matrix-sdk signs this device with the imported self-signing key; an account without
        // cross-signing keys leaves it unsigned, which is said here.
        let signed = match client.encryption().get_own_device().await {
            Ok(Some(device)) if device.is_cross_signed_by_owner() => Ok(()),
            Ok(Some(device)) => device.verify().await.map_err(|e| e.to_string()),
            Ok(None) => Err("this device's keys are not known yet".to_owned()),
            Err(error) => Err(error.to_string()),
        };
        match signed {
            Ok(()) => tracing::info!(
                "recovery key imported: this device is verified by the account's cross-signing keys"
            ),
            Err(error) => tracing::warn!(
                %error,
                "recovery key imported, but this device could not be signed with the account's key"
            ),
        }
    }
    if encrypted {
        tracing::info!(
            "the room is encrypted: the call's media will be too, as Element Call does it"
        );
    } else {
        tracing::info!(
            "the room is not encrypted: the call's media is not either, as with Element Call"
        );
    }
    Ok(())
}

/// The authorization service our membership advertises and our credentials come from (unless
/// LIVEKIT_SFU_GET_URL or LIVEKIT_TOKEN say otherwise): the configured one, else the first
/// LiveKit transport the homeserver advertises.
pub(crate) async fn transport_service(
    config: &Config,
    client: &matrix_sdk::Client,
) -> Result<String, Failure> {
    Ok(match &config.service_url {
        Some(url) => url.clone(),
        None => match discover_transports(client, None).await {
            Ok(found) => select_livekit_service_url(&found.transports)
                .ok_or_else(|| Failure::from_rtc(&RtcError::MissingLiveKitTransport))?,
            Err(error @ RtcError::MissingLiveKitTransport) => {
                let mut failure = Failure::from_rtc(&error);
                if matches!(config.credentials, CredentialSource::Static { .. }) {
                    failure.message = format!(
                        "with LIVEKIT_SERVICE_URL and LIVEKIT_TOKEN the call membership still advertises the \
                         homeserver's authorization service, so that others can subscribe: {}",
                        failure.message
                    );
                }
                return Err(failure);
            }
            Err(error) => return Err(Failure::from_rtc(&error)),
        },
    })
}

async fn run(config: Config, clock: Clock) -> Result<(), Failure> {
    let (fatal_tx, mut fatal) = mpsc::channel::<Failure>(4);
    let mut signals = Signals::new()?;
    // A sound file that cannot be read is a configuration error, before anything starts.
    let audio = media::audio_feed(&config)?;

    let client = tokio::select! {
        client = session::login(&config) => client?,
        () = signals.next() => return Ok(()),
    };
    let user_id = client.user_id().map(ToString::to_string).unwrap_or_default();
    let device_id = client.device_id().map(ToString::to_string).unwrap_or_default();
    clock.milestone("login", &format!("logged in as {user_id} (device {device_id})"));
    let room = tokio::select! {
        room = session::open_room(&config, &client) => room?,
        () = signals.next() => return Ok(()),
    };
    clock.milestone(
        "room",
        &format!("joined room {} ({})", room.room_id(), room.name().unwrap_or_default()),
    );
    if config.widget.is_none() {
        media_encryption(&config, &client, &room).await?;
    }

    // Keep syncing; a logged-out session ends the program.
    let sync_client = client.clone();
    let sync_fatal = fatal_tx.clone();
    let sync = tokio::spawn(async move {
        let settings = SyncSettings::default().timeout(Duration::from_secs(30));
        let _ = sync_client
            .sync_with_result_callback(settings, |result| {
                let fatal = sync_fatal.clone();
                async move {
                    if let Err(error) = result {
                        if let Some(ApiErrorKind::UnknownToken { .. }) =
                            error.client_api_error_kind()
                        {
                            let message =
                                "the homeserver logged this device out; start again to log in";
                            let _ = fatal
                                .send(Failure { kind: Kind::Auth, message: message.into() })
                                .await;
                            return Ok(LoopCtrl::Break);
                        }
                        tracing::warn!(%error, "sync failed; retrying");
                    }
                    Ok(LoopCtrl::Continue)
                }
            })
            .await;
    });

    #[cfg(feature = "experimental-widgets")]
    if let Some(hosting) = &config.widget {
        let outcome =
            widget::host(hosting, config.allow_insecure, room, &mut signals, &mut fatal).await;
        sync.abort();
        return outcome;
    }

    let service_url = transport_service(&config, &client).await?;
    tracing::info!(service = %service_url, "MatrixRTC transport");

    let observer = RoomCallObserver::new(&room)
        .await
        .map_err(|e| Failure::internal(format!("cannot follow the room's call: {e}")))?;
    tokio::spawn(status::log_members(observer.subscribe(), (user_id, device_id), clock));
    let mut options = ConnectorOptions::default();
    options.allow_insecure = config.allow_insecure;
    options.stats_interval = config.status_interval;
    if cfg!(feature = "e2ee-per-participant") {
        options.media_encryption = MediaEncryption::PerParticipant;
        options.key_grace_period = config.e2ee.key_grace;
        options.key_resend_interval = config.e2ee.key_resend;
    }
    let (connector, events) = LiveKitStr0mConnector::new(config.credentials.clone());
    let mut connector = connector.with_options(options);
    if let Some(feed) = media::feed(&config)? {
        connector = connector.with_video(feed);
    }
    if let Some(feed) = audio {
        connector = connector.with_audio(feed);
    }
    let recorder = match &config.recording {
        Some(recording) => Some(Recorder::new(recording.clone()).map_err(|e| {
            Failure::config(format!("RECORD_DIR {}: {e}", recording.dir.display()))
        })?),
        None => None,
    };
    tokio::spawn(status::log_events(
        events,
        config.status_interval,
        clock,
        fatal_tx.clone(),
        recorder.clone(),
    ));

    let mut driver_options = DriverOptions::default();
    driver_options.presence = match config.presence {
        config::Presence::Follow => Presence::Follow,
        config::Presence::Always => Presence::Always,
    };
    driver_options.sticky = config.sticky;
    driver_options.service_url = Some(service_url);
    driver_options.delegate_delayed_leave = config.delegate_delayed_leave;
    if config.presence == config::Presence::Follow && !observer.state().is_active() {
        tracing::info!("waiting for a call in the room");
    }
    let driver =
        LiveKitRoomDriver::with_options(room, connector, driver_options).with_observer(observer);
    let mut driver_status = driver.status();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut driver = tokio::spawn(driver.run_until(async {
        let _ = stop_rx.await;
    }));

    // Until the first connection works, a failure to connect ends the program.
    let mut connected_once = false;
    let mut status_open = true;
    let outcome = loop {
        tokio::select! {
            () = signals.next() => {
                tracing::info!("stopping: leaving the call");
                break Ok(());
            }
            failure = fatal.recv() => {
                break Err(failure.unwrap_or_else(|| Failure::internal("the status tasks stopped")));
            }
            ended = &mut driver => {
                // The driver only ends early when it cannot go on (no sticky events, ...).
                return Err(match ended {
                    Ok(Err(error)) => Failure::from_rtc(&error),
                    Ok(Ok(())) => Failure::internal("the call driver stopped"),
                    Err(error) => Failure::internal(format!("the call driver failed: {error}")),
                });
            }
            changed = driver_status.changed(), if status_open => {
                if changed.is_err() {
                    // The driver is ending; its result comes next.
                    status_open = false;
                    continue;
                }
                let status = driver_status.borrow_and_update().clone();
                match status {
                    DriverStatus::Connected => connected_once = true,
                    DriverStatus::Retrying { attempt, error, .. } if !connected_once && attempt > 0 => {
                        let failure = Failure::from_rtc(&error);
                        if failure.kind != Kind::Network || attempt >= NETWORK_ATTEMPTS {
                            break Err(failure);
                        }
                    }
                    _ => {}
                }
            }
        }
    };

    let _ = stop_tx.send(());
    match tokio::time::timeout(SHUTDOWN_DEADLINE, &mut driver).await {
        Ok(Ok(Ok(()))) => tracing::info!("left the call"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "the call driver ended with an error"),
        Ok(Err(error)) => tracing::warn!(%error, "the call driver failed"),
        Err(_) => tracing::warn!(
            "leaving took too long; the homeserver's delayed leave removes our membership"
        ),
    }
    if let Some(recorder) = recorder {
        recorder.finish().await;
    }
    sync.abort();
    outcome
}

/// `RUST_LOG` (default `info`), with matrix-sdk's own noise quietened unless `RUST_LOG` names
/// matrix-sdk: it logs every failed request as an error, expected 404s included, which this
/// program handles and reports itself.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let given = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let mut directives = given.clone().unwrap_or_else(|| "info".to_owned());
    if !given.as_deref().is_some_and(|g| g.contains("matrix_sdk")) {
        // A directive matches every target it begins: `matrix_sdk` would also quieten our own
        // `matrix_sdk_rtc*` crates, which keep the general level.
        let level = directives
            .split(',')
            .find(|d| !d.contains('=') && !d.trim().is_empty())
            .unwrap_or("info")
            .trim()
            .to_owned();
        directives.push_str(&format!(
            ",matrix_sdk=warn,matrix_sdk::http_client=off,matrix_sdk_base=warn,matrix_sdk_crypto=error,\
             matrix_sdk_sqlite=warn,matrix_sdk_rtc={level},matrix_sdk_rtc_livekit={level}"
        ));
    }
    if !given.as_deref().is_some_and(|g| g.contains("str0m")) {
        directives.push_str(",str0m=warn");
    }
    tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// SIGINT and SIGTERM.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| {
            signal(kind).map_err(|e| Failure::internal(format!("cannot listen for signals: {e}")))
        };
        Ok(Self {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
