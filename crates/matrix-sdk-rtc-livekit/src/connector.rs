//! [`LiveKitStr0mConnector`]: the [`LiveKitConnector`] that `matrix-sdk-rtc`'s driver calls to
//! put us on the call's media, with `livekit-str0m` underneath.

use std::sync::Arc;
use std::time::Duration;

use livekit_str0m::RoomOptions;
use matrix_sdk_rtc::media_keys::OwnMember;
use matrix_sdk_rtc::{ConnectRequest, LiveKitConnector, RtcError};
use tokio::sync::mpsc;

use crate::connection::{CallConnection, Context, EventSink, connect_room, sfu_info};
use crate::credentials::{self, CredentialSource, TokenRequest};
use crate::encryption::{CallEncryption, MediaEncryption};
use crate::events::{CallEvent, CallEvents};
use crate::publisher::{AudioFeed, Publishers, VideoFeed};

/// Events buffered for the application.
const EVENT_BUFFER: usize = 256;

/// Options of the connector.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectorOptions {
    /// Allow plain `http://` and `ws://` toward other machines (OpenID and LiveKit tokens
    /// then travel in clear text). Default: only toward this machine.
    pub allow_insecure: bool,
    /// Subscribe to members who publish on other SFUs (Element Call's `multi_sfu`). Default on.
    pub subscribe_to_other_sfus: bool,
    /// How often [`CallEvent::PublishStats`] comes. Default 10 s.
    pub stats_interval: Duration,
    /// How long `livekit-str0m` keeps rejoining a lost connection before the driver connects
    /// anew with fresh credentials. Default 20 s.
    pub reconnect_timeout: Duration,
    /// Media encryption. Default [`MediaEncryption::Off`].
    pub media_encryption: MediaEncryption,
    /// With encrypted media: how long to wait after connecting before publishing, so that the
    /// others have our key when our first frames come. Default 300 ms.
    pub key_grace_period: Duration,
    /// With encrypted media: send our key to every member again this often (`None`: only
    /// when the call changes, as Element Call does). Default `None`.
    pub key_resend_interval: Option<Duration>,
}

impl Default for ConnectorOptions {
    fn default() -> Self {
        Self {
            allow_insecure: false,
            subscribe_to_other_sfus: true,
            stats_interval: Duration::from_secs(10),
            reconnect_timeout: Duration::from_secs(20),
            media_encryption: MediaEncryption::Off,
            key_grace_period: Duration::from_millis(300),
            key_resend_interval: None,
        }
    }
}

/// Connects the call's media through LiveKit: fetches fresh credentials, joins our LiveKit room,
/// publishes the [`VideoFeed`] and [`AudioFeed`] if there are, hands everybody's video and
/// audio to the application, and subscribes to
/// members on other SFUs. Events of all its connections come out of the [`CallEvents`] that
/// [`LiveKitStr0mConnector::new`] returns.
///
/// ```no_run
/// # async fn run(room: matrix_sdk::Room) -> Result<(), matrix_sdk_rtc::RtcError> {
/// use matrix_sdk_rtc::{DriverOptions, LiveKitRoomDriver, Presence};
/// use matrix_sdk_rtc_livekit::{CallEvent, CredentialSource, LiveKitStr0mConnector, VideoFeed};
/// use rtc_media::pattern::TestPattern;
/// use rtc_media::source::TestPatternSource;
///
/// let feed = VideoFeed::new(|| Ok(TestPatternSource::new(TestPattern::RED, 640, 480, 30, 1)));
/// let (connector, mut events) = LiveKitStr0mConnector::new(CredentialSource::Transport);
/// let connector = connector.with_video(feed);
/// tokio::spawn(async move {
///     while let Some(event) = events.recv().await {
///         if let CallEvent::VideoSubscribed(mut video) = event {
///             tokio::spawn(async move { while let Some(_picture) = video.recv().await {} });
///         }
///     }
/// });
/// let mut options = DriverOptions::default();
/// options.presence = Presence::Follow;
/// LiveKitRoomDriver::with_options(room, connector, options).run().await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LiveKitStr0mConnector {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    credentials: CredentialSource,
    video: Option<VideoFeed>,
    audio: Option<AudioFeed>,
    options: ConnectorOptions,
    events: EventSink,
}

impl LiveKitStr0mConnector {
    /// A connector that takes its credentials from `credentials`, publishes nothing, and the
    /// stream of its events.
    pub fn new(credentials: CredentialSource) -> (Self, CallEvents) {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let inner = Inner {
            credentials,
            video: None,
            audio: None,
            options: ConnectorOptions::default(),
            events: EventSink(tx),
        };
        (Self { inner: Arc::new(inner) }, CallEvents(rx))
    }

    /// Publishes `feed` on every connection.
    pub fn with_video(self, feed: VideoFeed) -> Self {
        self.map(|inner| inner.video = Some(feed))
    }

    /// Publishes `feed` on every connection (with or without video).
    pub fn with_audio(self, feed: AudioFeed) -> Self {
        self.map(|inner| inner.audio = Some(feed))
    }

    /// Connects as `options` say.
    pub fn with_options(self, options: ConnectorOptions) -> Self {
        self.map(|inner| inner.options = options)
    }

    fn map(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        change(Arc::make_mut(&mut self.inner));
        self
    }

    async fn connect_call(
        &self,
        request: ConnectRequest<'_>,
    ) -> Result<CallConnection, crate::Error> {
        let inner = &self.inner;
        let client = request.room.client();
        let room_id = request.room.room_id().to_string();
        let token_request = TokenRequest {
            client: &client,
            room_id: &room_id,
            service_url: request.service_url,
            member_id: request.member_id,
            allow_insecure: inner.options.allow_insecure,
        };
        let credentials = credentials::fetch(&inner.credentials, token_request).await?;
        let info = sfu_info(&credentials, true);
        tracing::info!(livekit = %info.livekit_url, identity = %info.identity, room = %info.room, "LiveKit credentials ready");
        inner.events.send(CallEvent::Connecting(info.clone()));
        let encryption = self.encryption(&request, &info.identity);
        let room_options = RoomOptions {
            reconnect_timeout: inner.options.reconnect_timeout,
            frame_cryptor: encryption.as_ref().map(CallEncryption::cryptor),
            ..RoomOptions::default()
        };
        let (room, events) = connect_room(&credentials, room_options.clone()).await?;
        if encryption.is_some() {
            tokio::time::sleep(inner.options.key_grace_period).await;
        }
        let publishers = match Publishers::start(
            &room,
            inner.video.as_ref(),
            inner.audio.as_ref(),
            inner.events.0.clone(),
            inner.options.stats_interval,
            encryption.is_some(),
        )
        .await
        {
            Ok(publishers) => publishers,
            Err(error) => {
                room.disconnect().await;
                return Err(error);
            }
        };
        inner.events.send(CallEvent::Connected(info.clone()));
        let context = Context {
            client,
            room_id,
            service_url: request.service_url.to_owned(),
            member_id: request.member_id.map(str::to_owned),
            call: request.call,
            events: inner.events.clone(),
            room_options,
            allow_insecure: inner.options.allow_insecure,
            subscribe_to_other_sfus: inner.options.subscribe_to_other_sfus,
            keys: encryption.as_ref().map(CallEncryption::exchange),
        };
        let source = inner.credentials.clone();
        Ok(CallConnection::start(
            room,
            events,
            publishers,
            info.livekit_url,
            (source, context),
            encryption,
        ))
    }

    /// The media keys of a connection as `identity`, when the call's media is encrypted.
    fn encryption(&self, request: &ConnectRequest<'_>, identity: &str) -> Option<CallEncryption> {
        let options = &self.inner.options;
        if options.media_encryption != MediaEncryption::PerParticipant
            || !request.room.encryption_state().is_encrypted()
        {
            return None;
        }
        let client = request.room.client();
        let user_id = client.user_id()?.to_string();
        let device_id = client.device_id()?.to_string();
        let own = OwnMember {
            member_id: request
                .member_id
                .map_or_else(|| format!("{user_id}:{device_id}"), str::to_owned),
            user_id,
            device_id,
            livekit_identity: identity.to_owned(),
        };
        tracing::info!("the room is encrypted: so is our media (keys exchanged over Matrix)");
        Some(CallEncryption::start(
            request.room,
            own,
            request.call.clone(),
            options.key_resend_interval,
        ))
    }
}

impl LiveKitConnector for LiveKitStr0mConnector {
    type Connection = CallConnection;

    async fn connect(&self, request: ConnectRequest<'_>) -> Result<CallConnection, RtcError> {
        self.connect_call(request).await.map_err(RtcError::connector)
    }
}
