//! `--check`: everything the program needs to be in a call, tried once, then exit. For use
//! before enabling the service, and after changing its environment file.
//!
//! In order: the configuration (already parsed), the homeserver (its `versions` answer), the
//! login (the stored session, or a password login that stores one, so the service starts as
//! the same device), the room (joined, as the program would), the transport (LiveKit
//! credentials from the authorization service, then the LiveKit server's own answer), the
//! camera (opened, a format negotiated, one frame captured) and the audio source. Each step
//! prints one line on stdout; the first failure ends the check with the exit code the program
//! would have ended with.

use std::time::Duration;

use matrix_sdk::Client;
use matrix_sdk_rtc::RtcError;
use matrix_sdk_rtc_livekit::credentials::{self, TokenRequest};
use matrix_sdk_rtc_livekit::{CredentialSource, endpoint};

use crate::config::{Audio, Config, Video};
use crate::failure::{Failure, Kind};

/// How long one network step may take.
const STEP_DEADLINE: Duration = Duration::from_secs(20);
/// How long the camera has for its first frame.
#[cfg(feature = "v4l2")]
const CAMERA_DEADLINE: Duration = Duration::from_secs(10);

/// Runs every check; `Ok` when all passed.
pub(crate) async fn run(config: &Config) -> Result<(), Failure> {
    report("configuration", Ok(describe(config)))?;
    let http = matrix_sdk_rtc_livekit::tls::http_client()
        .map_err(|e| Failure::internal(format!("cannot build the HTTP client: {e}")))?;
    report("homeserver", deadline(homeserver(config, &http)).await)?;
    let client = report_value("login", deadline(crate::session::login(config)).await, |client| {
        format!(
            "{} (device {})",
            client.user_id().map(ToString::to_string).unwrap_or_default(),
            client.device_id().map(ToString::to_string).unwrap_or_default()
        )
    })?;
    let room =
        report_value("room", deadline(crate::session::open_room(config, &client)).await, |room| {
            format!("joined {} ({})", room.room_id(), room.name().unwrap_or_default())
        })?;
    if config.widget.is_some() {
        report(
            "transport",
            Ok("skipped: with ELEMENT_CALL_URL, Element Call connects itself".into()),
        )?;
    } else {
        report(
            "transport",
            deadline(transport(config, &http, &client, room.room_id().as_str())).await,
        )?;
    }
    report("camera", camera(config).await)?;
    report("audio", audio(config))?;
    println!("check passed: the program can join the call with this configuration");
    Ok(())
}

/// Prints the outcome of one step.
fn report(step: &str, outcome: Result<String, Failure>) -> Result<(), Failure> {
    report_value(step, outcome, Clone::clone).map(drop)
}

fn report_value<T>(
    step: &str,
    outcome: Result<T, Failure>,
    describe: impl FnOnce(&T) -> String,
) -> Result<T, Failure> {
    match &outcome {
        Ok(value) => println!("check {step}: ok, {}", describe(value)),
        Err(_) => println!("check {step}: FAILED"),
    }
    outcome
}

async fn deadline<T>(step: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    tokio::time::timeout(STEP_DEADLINE, step).await.unwrap_or_else(|_| {
        Err(Failure {
            kind: Kind::Network,
            message: format!("no answer within {} s", STEP_DEADLINE.as_secs()),
        })
    })
}

fn describe(config: &Config) -> String {
    let video = match &config.video {
        Video::None => "no video".to_owned(),
        Video::Pattern { width, height, fps, .. } => {
            format!("a test pattern, {width}x{height} at {fps} fps")
        }
        Video::Camera { device, .. } => format!("the camera {device}"),
    };
    format!(
        "homeserver {}, room {}, {video}",
        endpoint::display(&config.homeserver_url),
        config.room
    )
}

/// The homeserver answers `/_matrix/client/versions` as a Matrix homeserver.
async fn homeserver(config: &Config, http: &reqwest::Client) -> Result<String, Failure> {
    let url = endpoint::join(&config.homeserver_url, "_matrix/client/versions");
    let unreachable = |e: reqwest::Error| {
        Failure::from_http(
            config,
            "asking the homeserver for its versions",
            &matrix_sdk::HttpError::Reqwest(e.without_url()),
        )
    };
    let response = http.get(url).send().await.map_err(unreachable)?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let versions = body["versions"].as_array().filter(|_| status.is_success()).ok_or_else(|| {
        Failure::config(format!(
            "{} answered HTTP {status} without a list of Matrix versions: is HOMESERVER_URL the \
             homeserver's client API?",
            endpoint::display(&config.homeserver_url)
        ))
    })?;
    let newest = versions.iter().filter_map(|v| v.as_str()).next_back().unwrap_or("?");
    Ok(format!("{} speaks Matrix up to {newest}", endpoint::display(&config.homeserver_url)))
}

/// LiveKit credentials as the program would get them for its first connection, and the
/// LiveKit server's answer at the URL they name.
async fn transport(
    config: &Config,
    http: &reqwest::Client,
    client: &Client,
    room_id: &str,
) -> Result<String, Failure> {
    let service_url = crate::transport_service(config, client).await?;
    let member_id = config.sticky.then(|| format!("check-{}", fastrand::u64(..)));
    let request = TokenRequest {
        client,
        room_id,
        service_url: &service_url,
        member_id: member_id.as_deref(),
        allow_insecure: config.allow_insecure,
    };
    let credentials = credentials::fetch(&config.credentials, request)
        .await
        .map_err(|e| Failure::from_rtc(&RtcError::connector(e)))?;
    let livekit = endpoint::display(&credentials.livekit_url);
    // LiveKit answers plain HTTP on its signalling port (`OK` at `/`).
    let mut probe = credentials.livekit_url.clone();
    let scheme = if probe.scheme() == "wss" { "https" } else { "http" };
    probe
        .set_scheme(scheme)
        .map_err(|()| Failure::internal(format!("cannot make an HTTP URL of {livekit}")))?;
    probe.set_path("/");
    let answer = http.get(probe).send().await.map_err(|e| Failure {
        kind: Kind::Network,
        message: format!(
            "the LiveKit server {livekit} the credentials name does not answer ({}); check that it \
             runs and is reachable from here",
            matrix_sdk_rtc_livekit::error_chain(&e.without_url())
        ),
    })?;
    let source = match &config.credentials {
        CredentialSource::Static { .. } => "LIVEKIT_TOKEN".to_owned(),
        CredentialSource::SfuGet(url) => endpoint::display(url),
        _ => service_url,
    };
    let expiry = credentials
        .token
        .claims()
        .and_then(|c| c.expires_at)
        .map(|exp| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!(", token valid for {} s more", exp.saturating_sub(now))
        })
        .unwrap_or_default();
    Ok(format!(
        "credentials from {source}, LiveKit at {livekit} answers HTTP {}{expiry}",
        answer.status().as_u16()
    ))
}

/// The camera opens, agrees on a format and delivers a frame.
async fn camera(config: &Config) -> Result<String, Failure> {
    #[cfg(feature = "v4l2")]
    if let Video::Camera { device, size } = config.video.clone() {
        let name = device.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let camera = rtc_media::capture::V4l2Device::open(&device)?;
            let mut source = rtc_media::capture::CameraSource::new(camera, size)?;
            let frame = source.capture()?;
            Ok::<_, rtc_media::capture::CaptureError>((source.format(), frame))
        });
        let outcome = tokio::time::timeout(CAMERA_DEADLINE, opened).await;
        return match outcome {
            Ok(Ok(Ok((format, frame)))) => Ok(format!(
                "{name} gives {} {}x{}; first frame {}x{}",
                format.fourcc,
                format.width,
                format.height,
                frame.width(),
                frame.height()
            )),
            Ok(Ok(Err(error))) => Err(Failure::media(format!("V4L2_DEVICE {name}: {error}"))),
            Ok(Err(error)) => Err(Failure::internal(format!("the camera check failed: {error}"))),
            Err(_) => Err(Failure::media(format!(
                "V4L2_DEVICE {name}: no frame within {} s",
                CAMERA_DEADLINE.as_secs()
            ))),
        };
    }
    match &config.video {
        // The configuration refuses this already; said again rather than assumed.
        Video::Camera { device, .. } => Err(Failure::config(format!(
            "V4L2_DEVICE {device}: a camera needs the v4l2 feature: build with `--features v4l2`"
        ))),
        Video::Pattern { .. } => Ok("none needed: a test pattern".to_owned()),
        Video::None => Ok("none needed: no video".to_owned()),
    }
}

/// The audio source opens (the same check the program makes before it starts).
fn audio(config: &Config) -> Result<String, Failure> {
    crate::media::audio_feed(config)?;
    Ok(match &config.audio {
        Audio::None => "none".to_owned(),
        Audio::Tone { frequency } => format!("a {frequency} Hz tone"),
        Audio::File { path } => format!("{} reads as WAV", path.display()),
        Audio::Microphone { device } => format!("the microphone {device} opens"),
    })
}
