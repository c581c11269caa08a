//! An echo bot for Matrix calls: it joins the room's call when somebody is in it and sends the
//! first participant it sees their own camera, mirrored, and their own microphone, as a
//! separate member of the call. It shows the application side of `matrix-sdk-rtc-livekit`:
//! decoded pictures and PCM in ([`CallEvent::VideoSubscribed`], [`CallEvent::AudioSubscribed`]),
//! pictures and PCM out ([`VideoFeed::pushed`], [`AudioFeed::pushed`]).
//!
//! ```text
//! HOMESERVER_URL=https://matrix.example.org MATRIX_USERNAME=echo MATRIX_PASSWORD=… \
//! ROOM_ID='!room:example.org' cargo run -p example-rtc-echo-bot
//! ```
//!
//! The room must already have the bot as a member (or be public). The session is not stored:
//! every run is a new device. LiveKit credentials come from the homeserver's MatrixRTC
//! transport; in encrypted rooms media is encrypted as Element Call does it.

// matrix-sdk's sync future is deep.
#![recursion_limit = "256"]

use anyhow::{Context as _, bail};
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::OwnedRoomOrAliasId;
use matrix_sdk_rtc::{DriverOptions, LiveKitRoomDriver, Presence};
use matrix_sdk_rtc_livekit::{
    AudioFeed, CallEvent, CallEvents, ConnectorOptions, CredentialSource, FrameSender,
    LiveKitStr0mConnector, MediaEncryption, PcmSender, RemoteAudio, RemoteVideo, VideoFeed,
};

/// The size and rate of what we send back (pictures of other sizes are scaled).
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const FPS: u32 = 30;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .with_context(|| format!("{name} must be set"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,matrix_sdk=warn".into()),
        )
        .init();
    let room_id = OwnedRoomOrAliasId::try_from(env("ROOM_ID")?).context("ROOM_ID")?;
    let client = Client::builder()
        .homeserver_url(env("HOMESERVER_URL")?)
        .http_client(matrix_sdk_rtc_livekit::tls::http_client()?)
        .build()
        .await?;
    client
        .matrix_auth()
        .login_username(&env("MATRIX_USERNAME")?, &env("MATRIX_PASSWORD")?)
        .initial_device_display_name("echo bot")
        .await
        .context("logging in")?;
    client.sync_once(SyncSettings::default()).await.context("the first sync")?;
    let room = client.join_room_by_id_or_alias(&room_id, &[]).await.context("joining the room")?;
    let sync = tokio::spawn({
        let client = client.clone();
        async move { client.sync(SyncSettings::default()).await }
    });

    let (video, pictures) = VideoFeed::pushed(WIDTH, HEIGHT, FPS);
    let (audio, pcm) = AudioFeed::pushed(1);
    let mut options = ConnectorOptions::default();
    options.media_encryption = MediaEncryption::PerParticipant;
    let (connector, events) = LiveKitStr0mConnector::new(CredentialSource::Transport);
    let connector = connector.with_options(options).with_video(video).with_audio(audio);
    tokio::spawn(echo(events, pictures, pcm));

    let mut driver_options = DriverOptions::default();
    driver_options.presence = Presence::Follow;
    let driver = LiveKitRoomDriver::with_options(room, connector, driver_options);
    tracing::info!("waiting for somebody in the call");
    tokio::select! {
        result = driver.run_until(async { let _ = tokio::signal::ctrl_c().await; }) => {
            result.context("the call driver")?;
        }
        ended = sync => bail!("syncing stopped: {ended:?}"),
    }
    tracing::info!("left the call");
    Ok(())
}

/// Sends the first participant's media back to them; when their tracks end, the next
/// participant's.
async fn echo(mut events: CallEvents, pictures: FrameSender, pcm: PcmSender) {
    let mut echoed: Option<String> = None;
    while let Some(event) = events.recv().await {
        match event {
            CallEvent::VideoSubscribed(video) if claim(&mut echoed, video.info()) => {
                tokio::spawn(mirror_video(video, pictures.clone()));
            }
            CallEvent::AudioSubscribed(audio) if claim(&mut echoed, audio.info()) => {
                tokio::spawn(echo_audio(audio, pcm.clone()));
            }
            CallEvent::ParticipantDisconnected { identity }
                if echoed.as_ref() == Some(&identity) =>
            {
                tracing::info!(%identity, "the echoed participant left");
                echoed = None;
            }
            _ => {}
        }
    }
}

/// Whether the track belongs to the participant we echo (the first one becomes it).
fn claim(
    echoed: &mut Option<String>,
    info: &matrix_sdk_rtc_livekit::livekit_str0m::RemoteTrackInfo,
) -> bool {
    let identity = echoed.get_or_insert_with(|| {
        tracing::info!(identity = %info.participant_identity, "echoing this participant");
        info.participant_identity.clone()
    });
    *identity == info.participant_identity
}

async fn mirror_video(mut video: RemoteVideo, pictures: FrameSender) {
    let mut count = 0u64;
    while let Some(picture) = video.recv().await {
        pictures.send(picture.mirrored());
        count += 1;
        if count == 1 {
            tracing::info!(size = %format!("{}x{}", picture.width(), picture.height()), "mirroring video");
        }
    }
}

async fn echo_audio(audio: RemoteAudio, pcm: PcmSender) {
    let mut decoded = audio.decode(pcm.channels());
    tracing::info!("echoing audio");
    while let Some(frame) = decoded.recv().await {
        // Real time in, real time out: when the queue is full the connection is down, and old
        // sound is worth nothing.
        if !pcm.try_send(&frame.samples) {
            pcm.clear();
        }
    }
}
