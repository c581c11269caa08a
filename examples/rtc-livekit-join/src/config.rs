//! The configuration: every setting is an environment variable (the seed's names) and a flag.
//! A variable that is empty or only whitespace counts as unset.

use std::path::PathBuf;

use clap::Parser;
use matrix_sdk::ruma::{OwnedRoomOrAliasId, OwnedServerName};
use matrix_sdk_rtc_livekit::livekit_str0m::VideoCodec;
use matrix_sdk_rtc_livekit::{CredentialSource, Jwt, endpoint};
use rtc_media::pattern::TestPattern;
use zeroize::{Zeroize as _, Zeroizing};

/// A Rust program in a Matrix call, the way Element Call does it: it joins the room's MatrixRTC
/// call with its own membership and publishes a camera or a test pattern through LiveKit.
///
/// Every option is also an environment variable; empty or whitespace-only values count as
/// unset. LiveKit credentials come from LIVEKIT_SFU_GET_URL if set, else from
/// LIVEKIT_SERVICE_URL with LIVEKIT_TOKEN, else from the authorization service the homeserver
/// advertises.
// No `Debug`: it holds the secrets as given (`into_config` wraps them in `Secret`).
#[derive(Parser)]
#[command(
    name = "example-rtc-livekit-join",
    version,
    after_help = "Exit codes: 0 stopped by SIGINT/SIGTERM, 1 internal error, 2 configuration \
                  (including an unknown room and a homeserver without a LiveKit transport), \
                  3 authentication (password, authorization service or LiveKit refused), \
                  4 network (unreachable, TLS, timeouts), 5 media (camera or encoder).\n\
                  Logs: RUST_LOG (default info)."
)]
pub(crate) struct Args {
    /// Check the configuration and exit: the homeserver answers, the login works, the room can
    /// be joined, the authorization service gives LiveKit credentials and LiveKit answers, the
    /// camera gives a frame, the audio source opens. One line per step; exit code 0 when all
    /// passed, else the code of the first failure. For use before enabling the service.
    #[arg(long)]
    check: bool,
    /// The homeserver's client API URL, e.g. https://matrix.example.org.
    #[arg(long, env = "HOMESERVER_URL", hide_env_values = true)]
    homeserver_url: Option<String>,
    /// The Matrix user: a full id (@bot:example.org) or a local part.
    #[arg(long, env = "MATRIX_USERNAME", hide_env_values = true)]
    username: Option<String>,
    /// The user's password (used when no stored session is valid).
    #[arg(long, env = "MATRIX_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// A passphrase that encrypts the Matrix store (sqlite feature): the session with its access
    /// token, and the device's encryption keys. Prefer the variable (from a file only its owner
    /// reads, such as the service's environment file) to this flag: flags show in process
    /// lists. Without it the store is not encrypted at rest (a warning says so). A store keeps
    /// what it was created with: an encrypted one needs its passphrase, an unencrypted one none.
    #[arg(long, env = "MATRIX_STORE_PASSPHRASE", hide_env_values = true)]
    store_passphrase: Option<String>,
    /// The device id to log in as. Default: the device of the stored session, else a new one
    /// that later runs reuse.
    #[arg(long, env = "MATRIX_DEVICE_ID", hide_env_values = true)]
    device_id: Option<String>,
    /// The room: an id (!room:example.org) or an alias (#call:example.org).
    #[arg(long = "room", env = "ROOM_ID", hide_env_values = true)]
    room_id: Option<String>,
    /// Comma-separated server names to join the room through (for aliases and rooms on other
    /// servers).
    #[arg(long = "via", env = "VIA_SERVERS", hide_env_values = true)]
    via_servers: Option<String>,
    /// An authorization service's /sfu/get URL to take LiveKit credentials from (before
    /// LIVEKIT_SERVICE_URL/LIVEKIT_TOKEN and before discovery).
    #[arg(long, env = "LIVEKIT_SFU_GET_URL", hide_env_values = true)]
    sfu_get_url: Option<String>,
    /// A LiveKit server (wss://…) to join with LIVEKIT_TOKEN, a token minted elsewhere.
    #[arg(long = "livekit-url", env = "LIVEKIT_SERVICE_URL", hide_env_values = true)]
    livekit_url: Option<String>,
    /// A LiveKit join token for LIVEKIT_SERVICE_URL.
    #[arg(long, env = "LIVEKIT_TOKEN", hide_env_values = true)]
    livekit_token: Option<String>,
    /// What to publish: camera (or webcam), test_red (or test-red, red), pattern (a moving,
    /// counting test pattern; or moving, test_pattern, test-pattern), none. Default: camera
    /// when V4L2_DEVICE is set, else none.
    #[arg(long = "video-source", env = "V4L2_VIDEO_SOURCE", hide_env_values = true)]
    video_source: Option<String>,
    /// The camera device (needs the v4l2 feature), e.g. /dev/video0.
    #[arg(long = "video-device", env = "V4L2_DEVICE", hide_env_values = true)]
    video_device: Option<String>,
    /// Width of the published video. Default: the camera's current width, 640 for patterns.
    #[arg(long, env = "V4L2_WIDTH", hide_env_values = true)]
    width: Option<String>,
    /// Height of the published video. Default: the camera's current height, 480 for patterns.
    #[arg(long, env = "V4L2_HEIGHT", hide_env_values = true)]
    height: Option<String>,
    /// Frames per second of test patterns (cameras run at their own rate). Default 30.
    #[arg(long, env = "VIDEO_FPS", hide_env_values = true)]
    fps: Option<String>,
    /// The video codec: vp8 (default, what Element Call uses) or h264.
    #[arg(long, env = "VIDEO_CODEC", hide_env_values = true)]
    codec: Option<String>,
    /// The highest video bitrate, in bits per second (1700000, 1700k or 1.7M). Default 1.7M.
    #[arg(long, env = "VIDEO_MAX_BITRATE", hide_env_values = true)]
    max_bitrate: Option<String>,
    /// What to publish as audio: tone (a 440 Hz tone; tone:FREQ for another frequency),
    /// file:PATH (a WAV file, looped), mic (the default ALSA capture device; mic:DEVICE for
    /// another, e.g. mic:hw:1,0; needs the alsa feature), none. Default none.
    #[arg(long = "audio-source", env = "AUDIO_SOURCE", hide_env_values = true)]
    audio_source: Option<String>,
    /// Record every remote participant's media into this directory: per track, video as IVF
    /// and audio as Ogg Opus (as received, not re-encoded), plus PNG snapshots. Files are
    /// finished when the participant leaves and when the program stops.
    #[arg(long = "record", env = "RECORD_DIR", hide_env_values = true)]
    record_dir: Option<String>,
    /// With --record: seconds between PNG snapshots of each video (0: none). Default 10.
    #[arg(long = "snapshot-secs", env = "RECORD_SNAPSHOT_SECS", hide_env_values = true)]
    snapshot_secs: Option<String>,
    /// When to be in the call: follow (join when somebody else is in the call, leave when the
    /// last one has left; default) or always (start the call and stay, even alone).
    #[arg(long, env = "CALL_PRESENCE", hide_env_values = true)]
    presence: Option<String>,
    /// The membership to send: state (the per-device state event Element Call sends by default)
    /// or sticky (an MSC4354 sticky event, Element Call's Matrix 2.0 mode).
    #[arg(long, env = "MATRIXRTC_MEMBERSHIP", hide_env_values = true)]
    membership: Option<String>,
    /// Where the Matrix session and the device's keys are kept (sqlite feature). Default:
    /// $XDG_STATE_HOME/example-rtc-livekit-join, else ~/.local/state/example-rtc-livekit-join.
    #[arg(long, env = "MATRIX_STORE_DIR", hide_env_values = true)]
    store_dir: Option<String>,
    /// Allow http:// and ws:// to other machines (passwords and tokens then travel in clear
    /// text). Default: only to this machine.
    #[arg(long, env = "ALLOW_INSECURE_HTTP", hide_env_values = true, value_parser = clap::builder::FalseyValueParser::new())]
    allow_insecure_http: bool,
    /// Hand our delayed leave to the authorization service (MSC4195 delegation): it keeps us
    /// in the call while our media flows, even when we cannot reach the homeserver, and
    /// removes us soon after our media stops. Needs a service that supports it (not with
    /// LIVEKIT_TOKEN).
    #[arg(long, env = "DELEGATE_DELAYED_LEAVE", hide_env_values = true, value_parser = clap::builder::FalseyValueParser::new())]
    delegate_delayed_leave: bool,
    /// Seconds between the status lines about video sent and received. Default 10.
    #[arg(long, env = "STATUS_INTERVAL_SECS", hide_env_values = true)]
    status_interval: Option<String>,
    /// A recovery key: imports the account's cross-signing keys and key backup, so that this
    /// device is verified (feature `e2ee-per-participant`; without it, ignored with a warning).
    #[arg(long, env = "MATRIX_RECOVERY_KEY", hide_env_values = true)]
    recovery_key: Option<String>,
    /// Encrypted rooms: send our media key to every member again every this many seconds
    /// (0, the default: only when the call changes, as Element Call does).
    #[arg(long, env = "PER_PARTICIPANT_KEY_RESEND_SECS", hide_env_values = true)]
    key_resend_secs: Option<String>,
    /// Encrypted rooms: milliseconds between connecting and publishing, so that the others
    /// have our key for our first frames. Default 300.
    #[arg(long, env = "PER_PARTICIPANT_KEY_GRACE_PERIOD_MS", hide_env_values = true)]
    key_grace_ms: Option<String>,
    /// Host Element Call (served at this URL) as a widget instead of publishing our own media:
    /// the program serves a page on 127.0.0.1 that embeds it and prints its URL; whoever opens
    /// it is in the call as this account (feature `experimental-widgets`).
    #[arg(long, env = "ELEMENT_CALL_URL", hide_env_values = true)]
    element_call_url: Option<String>,
    /// The widget id Element Call is given. Default `element-call`.
    #[arg(long, env = "ELEMENT_CALL_WIDGET_ID", hide_env_values = true)]
    element_call_widget_id: Option<String>,
    /// The host page's URL, Element Call's parent: http://127.0.0.1:PORT/ (or localhost) to
    /// serve it on a fixed port. Default: a free port.
    #[arg(long, env = "ELEMENT_CALL_PARENT_URL", hide_env_values = true)]
    element_call_parent_url: Option<String>,
}

/// When to be in the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    Follow,
    Always,
}

/// What to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Video {
    None,
    Pattern { pattern: TestPattern, width: u32, height: u32, fps: u32 },
    Camera { device: String, size: Option<(u32, u32)> },
}

/// What to publish as audio.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Audio {
    None,
    Tone { frequency: f64 },
    File { path: PathBuf },
    Microphone { device: String },
}

/// Where and how to record remote media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recording {
    pub(crate) dir: PathBuf,
    /// Between PNG snapshots of each video; `None`: no snapshots.
    pub(crate) snapshot_interval: Option<std::time::Duration>,
}

/// A checked configuration.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) homeserver_url: url::Url,
    pub(crate) username: String,
    pub(crate) password: Password,
    /// Encrypts the Matrix store (`MATRIX_STORE_PASSPHRASE`); `None`: unencrypted.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) store_passphrase: Option<StorePassphrase>,
    pub(crate) device_id: Option<String>,
    pub(crate) room: OwnedRoomOrAliasId,
    pub(crate) via_servers: Vec<OwnedServerName>,
    pub(crate) credentials: CredentialSource,
    /// The authorization service to advertise, when the credentials name one.
    pub(crate) service_url: Option<String>,
    pub(crate) video: Video,
    pub(crate) codec: VideoCodec,
    pub(crate) max_bitrate: u32,
    pub(crate) audio: Audio,
    pub(crate) recording: Option<Recording>,
    pub(crate) presence: Presence,
    pub(crate) sticky: bool,
    pub(crate) store_dir: PathBuf,
    pub(crate) allow_insecure: bool,
    /// Hand our delayed leave to the authorization service (`DELEGATE_DELAYED_LEAVE`; never
    /// with static credentials, which have no service).
    pub(crate) delegate_delayed_leave: bool,
    pub(crate) status_interval: std::time::Duration,
    pub(crate) e2ee: E2ee,
    /// Host Element Call instead of publishing our own media (`ELEMENT_CALL_URL`).
    pub(crate) widget: Option<WidgetHosting>,
    /// `--check`: try every step once and exit.
    pub(crate) check_only: bool,
    pub(crate) warnings: Vec<String>,
}

/// Element Call hosted as a widget (`ELEMENT_CALL_*`).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "experimental-widgets"), allow(dead_code))]
pub(crate) struct WidgetHosting {
    pub(crate) element_call_url: url::Url,
    pub(crate) widget_id: Option<String>,
    pub(crate) page_url: Option<url::Url>,
}

/// Media encryption settings (used with feature `e2ee-per-participant`).
#[derive(Debug)]
pub(crate) struct E2ee {
    pub(crate) recovery_key: Option<RecoveryKey>,
    pub(crate) key_resend: Option<std::time::Duration>,
    pub(crate) key_grace: std::time::Duration,
}

/// A secret of the configuration: `Debug` never shows it, and its memory is zeroed when it is
/// dropped. (The environment the program was started with still holds the original, as does a
/// flag in the process's command line.)
pub(crate) struct Secret(Zeroizing<String>);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The Matrix password (`MATRIX_PASSWORD`).
pub(crate) type Password = Secret;
/// The recovery key (`MATRIX_RECOVERY_KEY`).
pub(crate) type RecoveryKey = Secret;
/// The passphrase of the Matrix store (`MATRIX_STORE_PASSPHRASE`).
pub(crate) type StorePassphrase = Secret;

/// A configuration error: one line naming the variable and what to do.
#[derive(Debug)]
pub(crate) struct ConfigError(pub(crate) String);

fn set(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// [`set`] for a secret: the value as given is zeroed once trimmed.
fn secret(value: Option<String>) -> Option<Secret> {
    let mut given = value?;
    let trimmed = Zeroizing::new(given.trim().to_owned());
    given.zeroize();
    (!trimmed.is_empty()).then_some(Secret(trimmed))
}

fn required(
    value: Option<String>,
    name: &str,
    flag: &str,
    what: &str,
) -> Result<String, ConfigError> {
    set(value).ok_or_else(|| ConfigError(format!("{name} (or --{flag}) must be set: {what}")))
}

fn number(value: Option<String>, name: &str, default: u32) -> Result<u32, ConfigError> {
    match set(value) {
        None => Ok(default),
        Some(text) => text.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ConfigError(format!("{name} must be a positive whole number, not `{text}`"))
        }),
    }
}

/// A whole number, zero included.
fn whole_number(value: Option<String>, name: &str, default: u32) -> Result<u32, ConfigError> {
    match set(value) {
        None => Ok(default),
        Some(text) => text.parse::<u32>().map_err(|_| {
            ConfigError(format!("{name} must be a whole number (0 or more), not `{text}`"))
        }),
    }
}

fn optional_number(value: Option<String>, name: &str) -> Result<Option<u32>, ConfigError> {
    Ok(match set(value) {
        None => None,
        some => Some(number(some, name, 0)?),
    })
}

/// `1700000`, `1700k`, `1.7M` → bits per second.
fn bitrate(value: Option<String>) -> Result<u32, ConfigError> {
    let Some(text) = set(value) else { return Ok(1_700_000) };
    let lower = text.to_ascii_lowercase();
    let (digits, factor) = if let Some(d) = lower.strip_suffix('m') {
        (d, 1_000_000.0)
    } else if let Some(d) = lower.strip_suffix('k') {
        (d, 1_000.0)
    } else {
        (lower.as_str(), 1.0)
    };
    digits
        .trim()
        .parse::<f64>()
        .ok()
        .map(|v| v * factor)
        .filter(|v| (50_000.0..=50_000_000.0).contains(v))
        .map(|v| v as u32)
        .ok_or_else(|| {
            ConfigError(format!(
                "VIDEO_MAX_BITRATE must be between 50k and 50M bits per second, not `{text}`"
            ))
        })
}

impl Args {
    /// Checks everything and turns it into a [`Config`].
    pub(crate) fn into_config(self) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let allow_insecure = self.allow_insecure_http;
        let homeserver = required(
            self.homeserver_url,
            "HOMESERVER_URL",
            "homeserver-url",
            "the homeserver's client API URL, e.g. https://matrix.example.org",
        )?;
        let homeserver_url = endpoint::http_url(&homeserver, "the Matrix password", allow_insecure)
            .map_err(|e| ConfigError(format!("HOMESERVER_URL: {e}")))?;
        let username =
            required(self.username, "MATRIX_USERNAME", "username", "the bot's Matrix user")?;
        let password = secret(self.password).ok_or_else(|| {
            ConfigError("MATRIX_PASSWORD (or --password) must be set: the bot's password".into())
        })?;
        let store_passphrase = secret(self.store_passphrase);
        if store_passphrase.is_some() && !cfg!(feature = "sqlite") {
            warnings.push(
                "MATRIX_STORE_PASSPHRASE is ignored: this build has no store on disk (feature sqlite), \
                 the session and the device's keys are in memory only"
                    .to_owned(),
            );
        }
        let room_text = required(self.room_id, "ROOM_ID", "room", "a room id (!…) or alias (#…)")?;
        let room = OwnedRoomOrAliasId::try_from(room_text.as_str()).map_err(|e| {
            ConfigError(format!(
                "ROOM_ID `{room_text}` is neither a room id (!room:server) nor an alias (#alias:server): {e}"
            ))
        })?;
        let via_servers = set(self.via_servers)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        OwnedServerName::try_from(s).map_err(|e| {
                            ConfigError(format!("VIA_SERVERS: `{s}` is not a server name: {e}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();

        let sfu_get = set(self.sfu_get_url);
        let livekit_url = set(self.livekit_url);
        let livekit_token = secret(self.livekit_token);
        let (credentials, service_url) = match (sfu_get, livekit_url, livekit_token) {
            (Some(sfu_get), static_url, static_token) => {
                if static_url.is_some() || static_token.is_some() {
                    warnings.push(
                        "LIVEKIT_SFU_GET_URL is set: LIVEKIT_SERVICE_URL and LIVEKIT_TOKEN are ignored"
                            .to_owned(),
                    );
                }
                let url = endpoint::http_url(&sfu_get, "an OpenID token", allow_insecure)
                    .map_err(|e| ConfigError(format!("LIVEKIT_SFU_GET_URL: {e}")))?;
                // The service behind `…/sfu/get` is our transport.
                let path = url.path().trim_end_matches('/');
                let service = path.strip_suffix("/sfu/get").map(|base| {
                    let mut service = url.clone();
                    service.set_path(base);
                    service.set_query(None);
                    service.to_string().trim_end_matches('/').to_owned()
                });
                (CredentialSource::SfuGet(url), service)
            }
            (None, Some(url), Some(token)) => {
                let livekit_url = endpoint::livekit_url(&url, allow_insecure)
                    .map_err(|e| ConfigError(format!("LIVEKIT_SERVICE_URL: {e}")))?;
                (CredentialSource::Static { livekit_url, token: Jwt::new(token.expose()) }, None)
            }
            (None, Some(_), None) => {
                return Err(ConfigError(
                    "LIVEKIT_SERVICE_URL needs LIVEKIT_TOKEN (a join token for that LiveKit server); \
                     or set LIVEKIT_SFU_GET_URL, or neither to use the homeserver's authorization service"
                        .into(),
                ));
            }
            (None, None, Some(_)) => {
                return Err(ConfigError(
                    "LIVEKIT_TOKEN needs LIVEKIT_SERVICE_URL (the LiveKit server, wss://…) it is valid for"
                        .into(),
                ));
            }
            (None, None, None) => (CredentialSource::Transport, None),
        };

        let width = optional_number(self.width, "V4L2_WIDTH")?;
        let height = optional_number(self.height, "V4L2_HEIGHT")?;
        let size = match (width, height) {
            (Some(w), Some(h)) => Some((w, h)),
            (None, None) => None,
            _ => return Err(ConfigError("set both V4L2_WIDTH and V4L2_HEIGHT, or neither".into())),
        };
        let fps = number(self.fps, "VIDEO_FPS", 30)?;
        let device = set(self.video_device);
        let source = set(self.video_source).map(|s| s.to_ascii_lowercase());
        let pattern = |pattern| {
            let (width, height) = size.unwrap_or((640, 480));
            Video::Pattern { pattern, width, height, fps }
        };
        let video = match source.as_deref() {
            Some("test_red" | "test-red" | "red") => pattern(TestPattern::RED),
            Some("pattern" | "moving" | "test_pattern" | "test-pattern") => {
                pattern(TestPattern::Moving)
            }
            Some("none" | "off") => Video::None,
            Some("camera" | "webcam") | None => match device {
                Some(device) => Video::Camera { device, size },
                None if source.is_some() => {
                    return Err(ConfigError(
                        "V4L2_VIDEO_SOURCE=camera needs V4L2_DEVICE (e.g. /dev/video0); \
                         or choose test_red, pattern or none"
                            .into(),
                    ));
                }
                None => Video::None,
            },
            Some(other) => {
                return Err(ConfigError(format!(
                    "V4L2_VIDEO_SOURCE `{other}` is not one of camera, webcam, test_red, test-red, red, pattern, none"
                )));
            }
        };
        if let Video::Camera { .. } = video
            && !cfg!(feature = "v4l2")
        {
            return Err(ConfigError(
                "a camera needs the v4l2 feature: build with `--features v4l2`, or set \
                 V4L2_VIDEO_SOURCE=test_red or pattern"
                    .into(),
            ));
        }
        let codec = match set(self.codec).map(|c| c.to_ascii_lowercase()).as_deref() {
            None | Some("vp8") => VideoCodec::Vp8,
            Some("h264" | "h.264") => VideoCodec::H264,
            Some(other) => {
                return Err(ConfigError(format!("VIDEO_CODEC `{other}` is not vp8 or h264")));
            }
        };
        if codec == VideoCodec::H264
            && let Video::Pattern { width, height, .. } = video
            && (width % 2 == 1 || height % 2 == 1)
        {
            return Err(ConfigError(format!(
                "H.264 needs an even width and height, not {width}x{height}"
            )));
        }
        let audio = audio_source(self.audio_source)?;
        let snapshot_secs = whole_number(self.snapshot_secs, "RECORD_SNAPSHOT_SECS", 10)?;
        let recording = set(self.record_dir).map(|dir| Recording {
            dir: PathBuf::from(dir),
            snapshot_interval: (snapshot_secs > 0)
                .then(|| std::time::Duration::from_secs(u64::from(snapshot_secs))),
        });
        if recording.is_none() && snapshot_secs != 10 {
            warnings.push("RECORD_SNAPSHOT_SECS only matters with RECORD_DIR; ignored".to_owned());
        }
        let presence = match set(self.presence).map(|p| p.to_ascii_lowercase()).as_deref() {
            None | Some("follow") => Presence::Follow,
            Some("always") => Presence::Always,
            Some(other) => {
                return Err(ConfigError(format!(
                    "CALL_PRESENCE `{other}` is not follow or always"
                )));
            }
        };
        let sticky = match set(self.membership).map(|m| m.to_ascii_lowercase()).as_deref() {
            None | Some("state") => false,
            Some("sticky") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "MATRIXRTC_MEMBERSHIP `{other}` is not state or sticky"
                )));
            }
        };
        let widget = widget_hosting(
            set(self.element_call_url),
            set(self.element_call_widget_id),
            set(self.element_call_parent_url),
            &mut warnings,
        )?;
        let recovery_key = secret(self.recovery_key);
        let key_resend = whole_number(self.key_resend_secs, "PER_PARTICIPANT_KEY_RESEND_SECS", 0)?;
        let key_grace =
            whole_number(self.key_grace_ms, "PER_PARTICIPANT_KEY_GRACE_PERIOD_MS", 300)?;
        if !cfg!(feature = "e2ee-per-participant") {
            if recovery_key.is_some() {
                warnings.push(
                    "MATRIX_RECOVERY_KEY is ignored: this build has no media encryption (feature \
                     e2ee-per-participant), for which it imports the account's keys"
                        .to_owned(),
                );
            }
            if key_resend > 0 || key_grace != 300 {
                warnings.push(
                    "PER_PARTICIPANT_KEY_* are ignored: this build has no media encryption (feature \
                     e2ee-per-participant)"
                        .to_owned(),
                );
            }
        }
        let e2ee = E2ee {
            recovery_key: recovery_key.filter(|_| cfg!(feature = "e2ee-per-participant")),
            key_resend: (key_resend > 0)
                .then(|| std::time::Duration::from_secs(u64::from(key_resend))),
            key_grace: std::time::Duration::from_millis(u64::from(key_grace)),
        };
        let store_dir = set(self.store_dir).map(PathBuf::from).unwrap_or_else(default_store_dir);
        let status_interval = std::time::Duration::from_secs(u64::from(number(
            self.status_interval,
            "STATUS_INTERVAL_SECS",
            10,
        )?));
        let static_credentials = matches!(credentials, CredentialSource::Static { .. });
        let delegate_delayed_leave = self.delegate_delayed_leave && !static_credentials;
        if self.delegate_delayed_leave && static_credentials {
            warnings.push(
                "DELEGATE_DELAYED_LEAVE ignored: with LIVEKIT_TOKEN there is no authorization service to hand the delayed leave to".to_owned(),
            );
        }
        if widget.is_some() {
            let mut ignored = Vec::new();
            if !matches!(video, Video::None) {
                ignored.push("V4L2_VIDEO_SOURCE/V4L2_DEVICE");
            }
            if !matches!(audio, Audio::None) {
                ignored.push("AUDIO_SOURCE");
            }
            if recording.is_some() {
                ignored.push("RECORD_DIR");
            }
            if !ignored.is_empty() {
                warnings.push(format!(
                    "{} ignored: with ELEMENT_CALL_URL, Element Call in the browser sends and receives the media",
                    ignored.join(", ")
                ));
            }
        }
        Ok(Config {
            homeserver_url,
            username,
            password,
            store_passphrase,
            device_id: set(self.device_id),
            room,
            via_servers,
            credentials,
            service_url,
            video,
            codec,
            max_bitrate: bitrate(self.max_bitrate)?,
            audio,
            recording,
            presence,
            sticky,
            store_dir,
            allow_insecure,
            delegate_delayed_leave,
            status_interval,
            e2ee,
            widget,
            check_only: self.check,
            warnings,
        })
    }
}

/// `ELEMENT_CALL_URL`, `ELEMENT_CALL_WIDGET_ID`, `ELEMENT_CALL_PARENT_URL`.
fn widget_hosting(
    url: Option<String>,
    widget_id: Option<String>,
    parent_url: Option<String>,
    warnings: &mut Vec<String>,
) -> Result<Option<WidgetHosting>, ConfigError> {
    let Some(url) = url else {
        if widget_id.is_some() || parent_url.is_some() {
            warnings.push(
                "ELEMENT_CALL_WIDGET_ID and ELEMENT_CALL_PARENT_URL only matter with ELEMENT_CALL_URL; ignored"
                    .to_owned(),
            );
        }
        return Ok(None);
    };
    if !cfg!(feature = "experimental-widgets") {
        return Err(ConfigError(
            "ELEMENT_CALL_URL hosts Element Call as a widget, which needs the experimental-widgets feature: \
             build with `--features experimental-widgets`, or unset it to join with the program's own media"
                .into(),
        ));
    }
    let element_call_url = url
        .parse()
        .map_err(|e| ConfigError(format!("ELEMENT_CALL_URL `{url}` is not a URL: {e}")))?;
    let page_url = match parent_url {
        Some(parent) => Some(parent.parse().map_err(|e| {
            ConfigError(format!("ELEMENT_CALL_PARENT_URL `{parent}` is not a URL: {e}"))
        })?),
        None => None,
    };
    Ok(Some(WidgetHosting { element_call_url, widget_id, page_url }))
}

/// `tone`, `tone:FREQ`, `file:PATH`, `mic`, `mic:DEVICE`, `none`.
fn audio_source(value: Option<String>) -> Result<Audio, ConfigError> {
    let Some(text) = set(value) else { return Ok(Audio::None) };
    let (kind, argument) = match text.split_once(':') {
        Some((kind, argument)) => (kind.to_ascii_lowercase(), Some(argument.trim())),
        None => (text.to_ascii_lowercase(), None),
    };
    let audio = match (kind.as_str(), argument) {
        ("none" | "off", None) => Audio::None,
        ("tone", None) => Audio::Tone { frequency: 440.0 },
        ("tone", Some(hz)) => {
            let frequency =
                hz.parse::<f64>().ok().filter(|f| (20.0..=20_000.0).contains(f)).ok_or_else(
                    || {
                        ConfigError(format!(
                            "AUDIO_SOURCE `{text}`: the tone's frequency must be 20 to 20000 Hz"
                        ))
                    },
                )?;
            Audio::Tone { frequency }
        }
        ("file", Some(path)) if !path.is_empty() => Audio::File { path: PathBuf::from(path) },
        ("file", _) => {
            return Err(ConfigError(
                "AUDIO_SOURCE=file needs a path: file:/path/to/sound.wav".into(),
            ));
        }
        ("mic" | "microphone", device) => {
            if !cfg!(feature = "alsa") {
                return Err(ConfigError(
                    "AUDIO_SOURCE=mic needs the alsa feature: build with `--features alsa`, or                      use tone or file:PATH"
                        .into(),
                ));
            }
            let device = device.filter(|d| !d.is_empty()).unwrap_or("default").to_owned();
            Audio::Microphone { device }
        }
        _ => {
            return Err(ConfigError(format!(
                "AUDIO_SOURCE `{text}` is not one of tone, tone:FREQ, file:PATH, mic, mic:DEVICE, none"
            )));
        }
    };
    Ok(audio)
}

/// `$XDG_STATE_HOME/example-rtc-livekit-join`, else `~/.local/state/…`, else `./…-store`.
fn default_store_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        });
    match base {
        Some(base) => base.join("example-rtc-livekit-join"),
        None => PathBuf::from("example-rtc-livekit-join-store"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut argv = vec!["example-rtc-livekit-join".to_owned()];
        for (flag, value) in pairs {
            argv.push(format!("--{flag}={value}"));
        }
        Args::try_parse_from(argv).expect("flags parse").into_config()
    }

    const BASE: [(&str, &str); 4] = [
        ("homeserver-url", "https://matrix.example.org"),
        ("username", "bot"),
        ("password", "secret"),
        ("room", "!room:example.org"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut all: Vec<(&str, &str)> = BASE
            .iter()
            .filter(|(flag, _)| !extra.iter().any(|(f, _)| f == flag))
            .copied()
            .collect();
        all.extend_from_slice(extra);
        args(&all)
    }

    #[test]
    fn audio_sources_and_their_mistakes() {
        assert_eq!(with(&[]).unwrap().audio, Audio::None, "the seed's behaviour: no audio");
        assert_eq!(
            with(&[("audio-source", "tone")]).unwrap().audio,
            Audio::Tone { frequency: 440.0 }
        );
        assert_eq!(
            with(&[("audio-source", " Tone:1000 ")]).unwrap().audio,
            Audio::Tone { frequency: 1000.0 }
        );
        assert_eq!(
            with(&[("audio-source", "file:/tmp/a b.wav")]).unwrap().audio,
            Audio::File { path: PathBuf::from("/tmp/a b.wav") }
        );
        assert_eq!(with(&[("audio-source", "none")]).unwrap().audio, Audio::None);
        for bad in ["tone:5", "tone:loud", "file:", "file", "speaker", "none:x"] {
            let error = with(&[("audio-source", bad)]).unwrap_err().0;
            assert!(error.contains("AUDIO_SOURCE"), "{bad}: {error}");
        }
        let mic = with(&[("audio-source", "mic:hw:1,0")]);
        if cfg!(feature = "alsa") {
            assert_eq!(mic.unwrap().audio, Audio::Microphone { device: "hw:1,0".into() });
            assert_eq!(
                with(&[("audio-source", "mic")]).unwrap().audio,
                Audio::Microphone { device: "default".into() }
            );
        } else {
            assert!(mic.unwrap_err().0.contains("alsa feature"));
        }
    }

    #[test]
    fn recording_has_a_directory_and_a_snapshot_interval() {
        assert_eq!(with(&[]).unwrap().recording, None);
        // Empty counts as unset, as an environment file's `RECORD_DIR=` line gives it.
        let empty = with(&[("record", ""), ("store-dir", " ")]).unwrap();
        assert_eq!(empty.recording, None);
        assert_eq!(empty.store_dir, default_store_dir());
        let recording = with(&[("record", "/tmp/rec")]).unwrap().recording.unwrap();
        assert_eq!(recording.dir, PathBuf::from("/tmp/rec"));
        assert_eq!(recording.snapshot_interval, Some(std::time::Duration::from_secs(10)));
        let none = with(&[("record", "/tmp/rec"), ("snapshot-secs", "0")]).unwrap();
        assert_eq!(none.recording.unwrap().snapshot_interval, None);
        assert!(with(&[("record", "/tmp/rec"), ("snapshot-secs", "-1")]).is_err());
        let lonely = with(&[("snapshot-secs", "3")]).unwrap();
        assert!(lonely.warnings.iter().any(|w| w.contains("RECORD_SNAPSHOT_SECS")));
    }

    #[test]
    fn the_password_never_shows() {
        let config = with(&[]).unwrap();
        assert_eq!(config.password.expose(), "secret");
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn the_store_passphrase_never_shows() {
        let config = with(&[]).unwrap();
        assert!(config.store_passphrase.is_none(), "unencrypted unless set");
        assert!(with(&[("store-passphrase", "  ")]).unwrap().store_passphrase.is_none());
        let config = with(&[("store-passphrase", " open sesame ")]).unwrap();
        assert_eq!(config.store_passphrase.as_ref().map(Secret::expose), Some("open sesame"));
        assert!(!format!("{config:?}").contains("sesame"), "{config:?}");
        assert_eq!(
            config.warnings.iter().any(|w| w.contains("MATRIX_STORE_PASSPHRASE is ignored")),
            !cfg!(feature = "sqlite"),
            "only a build without a store on disk ignores it"
        );
        let help = <Args as clap::CommandFactory>::command().render_long_help().to_string();
        assert!(help.contains("[env: MATRIX_STORE_PASSPHRASE"), "{help}");
        assert!(help.contains("process lists"), "the help says to prefer the variable");
    }

    #[test]
    fn secrets_are_trimmed_and_empty_ones_unset() {
        assert_eq!(secret(Some(" a b ".into())).as_ref().map(Secret::expose), Some("a b"));
        assert!(secret(Some(" \t".into())).is_none());
        assert!(secret(None).is_none());
        let error = with(&[("password", " ")]).unwrap_err();
        assert!(error.0.starts_with("MATRIX_PASSWORD (or --password) must be set"), "{}", error.0);
        let config =
            with(&[("livekit-url", "wss://sfu.example.org"), ("livekit-token", " a.b.c ")])
                .unwrap();
        assert!(!format!("{config:?}").contains("a.b.c"), "the token never shows");
        match config.credentials {
            CredentialSource::Static { token, .. } => assert_eq!(token.expose(), "a.b.c"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn media_key_settings() {
        let config = with(&[]).unwrap();
        assert_eq!(config.e2ee.key_resend, None, "0 by default: only when the call changes");
        assert_eq!(config.e2ee.key_grace, std::time::Duration::from_millis(300));
        let config = with(&[("key-resend-secs", "5"), ("key-grace-ms", "0")]).unwrap();
        assert_eq!(config.e2ee.key_resend, Some(std::time::Duration::from_secs(5)));
        assert_eq!(config.e2ee.key_grace, std::time::Duration::ZERO);
        let error = with(&[("key-grace-ms", "soon")]).unwrap_err();
        assert!(error.0.starts_with("PER_PARTICIPANT_KEY_GRACE_PERIOD_MS"), "{}", error.0);
        assert!(with(&[("key-resend-secs", "-1")]).is_err());
        let config = with(&[("recovery-key", "EsTc secret")]).unwrap();
        assert!(!format!("{config:?}").contains("EsTc secret"), "the recovery key never shows");
        assert_eq!(
            config.e2ee.recovery_key.is_some(),
            cfg!(feature = "e2ee-per-participant"),
            "used with the feature, ignored with a warning without it"
        );
        assert_eq!(
            config.warnings.iter().any(|w| w.contains("MATRIX_RECOVERY_KEY")),
            !cfg!(feature = "e2ee-per-participant")
        );
    }

    #[test]
    fn whitespace_counts_as_unset() {
        let error = args(&[("homeserver-url", "  "), ("username", "bot")]).unwrap_err();
        assert!(error.0.starts_with("HOMESERVER_URL"), "{}", error.0);
        let config = with(&[("via", " "), ("livekit-token", "   ")]).unwrap();
        assert!(config.via_servers.is_empty());
        assert!(matches!(config.credentials, CredentialSource::Transport));
    }

    #[test]
    fn credentials_in_the_seeds_order() {
        let config = with(&[
            ("sfu-get-url", "https://jwt.example.org/livekit/jwt/sfu/get"),
            ("livekit-url", "wss://sfu.example.org"),
            ("livekit-token", "a.b.c"),
        ])
        .unwrap();
        assert!(matches!(config.credentials, CredentialSource::SfuGet(_)));
        assert_eq!(config.service_url.as_deref(), Some("https://jwt.example.org/livekit/jwt"));
        assert_eq!(config.warnings.len(), 1);
        let config =
            with(&[("livekit-url", "wss://sfu.example.org"), ("livekit-token", "a.b.c")]).unwrap();
        assert!(matches!(config.credentials, CredentialSource::Static { .. }));
        assert!(
            with(&[("livekit-url", "wss://sfu.example.org")])
                .unwrap_err()
                .0
                .contains("LIVEKIT_TOKEN")
        );
        assert!(with(&[("livekit-token", "a.b.c")]).unwrap_err().0.contains("LIVEKIT_SERVICE_URL"));
        let insecure = with(&[("sfu-get-url", "http://jwt.example.org/sfu/get")]).unwrap_err();
        assert!(insecure.0.contains("plain http"), "{}", insecure.0);
    }

    #[test]
    fn rooms_aliases_and_via_servers() {
        let config =
            with(&[("room", "#call:example.org"), ("via", "example.org, other.org")]).unwrap();
        assert!(config.room.is_room_alias_id());
        assert_eq!(config.via_servers.len(), 2);
        assert!(with(&[("room", "call")]).unwrap_err().0.contains("ROOM_ID"));
        assert!(with(&[("via", "bad server!")]).unwrap_err().0.contains("VIA_SERVERS"));
    }

    #[test]
    fn video_sources() {
        for name in ["test_red", "test-red", "red", "RED"] {
            let config = with(&[("video-source", name)]).unwrap();
            assert_eq!(
                config.video,
                Video::Pattern { pattern: TestPattern::RED, width: 640, height: 480, fps: 30 }
            );
        }
        let config =
            with(&[("video-source", "pattern"), ("width", "1280"), ("height", "720")]).unwrap();
        assert!(matches!(
            config.video,
            Video::Pattern { pattern: TestPattern::Moving, width: 1280, .. }
        ));
        assert_eq!(with(&[]).unwrap().video, Video::None);
        assert!(with(&[("video-source", "camera")]).unwrap_err().0.contains("V4L2_DEVICE"));
        assert!(with(&[("video-source", "hologram")]).is_err());
        assert!(with(&[("width", "640")]).unwrap_err().0.contains("both"));
        assert!(with(&[("width", "wide"), ("height", "1")]).unwrap_err().0.contains("V4L2_WIDTH"));
        let camera = with(&[("video-device", "/dev/video0")]);
        if cfg!(feature = "v4l2") {
            assert!(matches!(camera.unwrap().video, Video::Camera { .. }));
        } else {
            assert!(camera.unwrap_err().0.contains("v4l2 feature"));
        }
    }

    #[test]
    fn codecs_bitrates_presence_and_membership() {
        let config = with(&[
            ("codec", "h264"),
            ("max-bitrate", "2.5M"),
            ("presence", "always"),
            ("membership", "sticky"),
        ])
        .unwrap();
        assert_eq!(config.codec, VideoCodec::H264);
        assert_eq!(config.max_bitrate, 2_500_000);
        assert_eq!(config.presence, Presence::Always);
        assert!(config.sticky);
        assert_eq!(with(&[("max-bitrate", "800k")]).unwrap().max_bitrate, 800_000);
        assert!(with(&[("max-bitrate", "1")]).is_err());
        assert!(with(&[("codec", "av1")]).is_err());
        assert!(with(&[("presence", "sometimes")]).is_err());
        let hosted = with(&[("element-call-url", "https://call.element.io")]);
        if cfg!(feature = "experimental-widgets") {
            let widget = hosted.unwrap().widget.unwrap();
            assert_eq!(widget.element_call_url.as_str(), "https://call.element.io/");
            assert!(with(&[("element-call-url", "not a url")]).is_err());
            let parent = with(&[
                ("element-call-url", "https://call.element.io"),
                ("element-call-parent-url", "http://127.0.0.1:8765/"),
            ]);
            assert_eq!(parent.unwrap().widget.unwrap().page_url.unwrap().port(), Some(8765));
        } else {
            assert!(hosted.unwrap_err().0.contains("--features experimental-widgets"));
        }
        let ignored = with(&[("element-call-widget-id", "x")]).unwrap();
        assert!(ignored.widget.is_none());
        assert!(ignored.warnings.iter().any(|w| w.contains("ELEMENT_CALL_WIDGET_ID")));
    }
}
