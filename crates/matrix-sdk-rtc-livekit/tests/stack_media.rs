//! Bots with media in real calls on the local stack: matrix-sdk clients on Synapse, the
//! authorization services, two LiveKit servers. Needs `cargo xtask devstack up` (or `cargo
//! xtask test`).
#![recursion_limit = "256"]

use std::time::Duration;

use matrix_sdk::config::SyncSettings;
use matrix_sdk::{Client, Room};
use matrix_sdk_rtc::{DriverOptions, DriverStatus, LiveKitRoomDriver, Presence, RtcError};
use matrix_sdk_rtc_livekit::livekit_str0m::VideoCodec;
use matrix_sdk_rtc_livekit::rtc_media::audio::tone_power;
use matrix_sdk_rtc_livekit::rtc_media::pattern::{Rgb, TestPattern};
use matrix_sdk_rtc_livekit::rtc_media::source::TestPatternSource;
use matrix_sdk_rtc_livekit::{AudioFeed, RemoteAudio};
use matrix_sdk_rtc_livekit::{CallEvent, CallEvents, LiveKitStr0mConnector, SfuInfo, VideoFeed};
use matrix_sdk_rtc_livekit::{ConnectorOptions, CredentialSource, MediaEncryption, RemoteVideo};
use rtc_test_support::{Homeserver, StackInfo, User};
use tokio::sync::{oneshot, watch};

/// A logged-in, syncing matrix-sdk client in the test room.
struct Bot {
    client: Client,
    user: User,
    device: String,
}

impl Bot {
    async fn new(stack: &StackInfo, hs: &Homeserver, prefix: &str, device: &str) -> Self {
        let user = hs.register_unique(prefix).await.unwrap();
        let localpart = user.user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
        let client = Client::builder().homeserver_url(&stack.homeserver_url).build().await.unwrap();
        client
            .matrix_auth()
            .login_username(&localpart, &localpart)
            .device_id(device)
            .send()
            .await
            .unwrap();
        Self { client, user, device: device.to_owned() }
    }

    async fn start_syncing(&self) {
        self.client.sync_once(SyncSettings::default()).await.unwrap();
        let client = self.client.clone();
        tokio::spawn(async move { client.sync(SyncSettings::default()).await });
    }

    fn room(&self, room_id: &str) -> Room {
        self.client.get_room(&room_id.parse::<matrix_sdk::ruma::OwnedRoomId>().unwrap()).unwrap()
    }
}

/// A running driver with the livekit-str0m connector.
struct Running {
    events: CallEvents,
    status: watch::Receiver<DriverStatus>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), RtcError>>,
}

impl Running {
    fn start(
        room: Room,
        presence: Presence,
        colour: Option<Rgb>,
        service_url: &str,
        sticky: bool,
    ) -> Self {
        Self::start_with(room, presence, colour, service_url, sticky, MediaEncryption::Off)
    }

    fn start_with(
        room: Room,
        presence: Presence,
        colour: Option<Rgb>,
        service_url: &str,
        sticky: bool,
        encryption: MediaEncryption,
    ) -> Self {
        Self::start_full(room, presence, colour, None, service_url, sticky, encryption)
    }

    fn start_full(
        room: Room,
        presence: Presence,
        colour: Option<Rgb>,
        audio: Option<AudioFeed>,
        service_url: &str,
        sticky: bool,
        encryption: MediaEncryption,
    ) -> Self {
        let (connector, events) = LiveKitStr0mConnector::new(CredentialSource::Transport);
        let mut connector_options = ConnectorOptions::default();
        connector_options.media_encryption = encryption;
        let mut connector = connector.with_options(connector_options);
        if let Some(audio) = audio {
            connector = connector.with_audio(audio);
        }
        let connector = match colour {
            Some(colour) => connector.with_video(
                VideoFeed::new(move || {
                    Ok(TestPatternSource::new(TestPattern::Solid(colour), 320, 240, 20, 1))
                })
                .with_codec(VideoCodec::Vp8)
                .with_max_bitrate(400_000),
            ),
            None => connector,
        };
        let mut options = DriverOptions::default();
        options.presence = presence;
        options.sticky = sticky;
        options.service_url = Some(service_url.to_owned());
        let driver = LiveKitRoomDriver::with_options(room, connector, options);
        let status = driver.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(driver.run_until(async {
            let _ = stopped.await;
        }));
        Self { events, status, stop, task }
    }

    /// The next event that `pick` takes, within `within`.
    async fn next<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(CallEvent) -> Option<T>,
    ) -> T {
        tokio::time::timeout(within, async {
            loop {
                let event = self.events.recv().await.expect("the events end");
                if let Some(found) = pick(event) {
                    return found;
                }
            }
        })
        .await
        .expect("the event comes in time")
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        assert!(matches!(*self.status.borrow(), DriverStatus::Stopped));
    }
}

/// The member behind `video` once its membership has arrived (it may come after the media).
async fn member_of(video: &RemoteVideo) -> matrix_sdk_rtc::CallMember {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(member) = video.member() {
                return member;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the member behind the video becomes known")
}

/// Reads pictures until one is close to `colour`; panics after `within`.
async fn wait_for_colour(video: &mut RemoteVideo, colour: Rgb, within: Duration) {
    let (y, u, v) = colour.to_yuv();
    let result = tokio::time::timeout(within, async {
        loop {
            let picture = video.recv().await.expect("the video ends");
            let (my, mu, mv) = picture.mean();
            if (my - f64::from(y)).abs() < 12.0
                && (mu - f64::from(u)).abs() < 12.0
                && (mv - f64::from(v)).abs() < 12.0
            {
                return (picture.width(), picture.height());
            }
        }
    })
    .await;
    let (w, h) = result
        .unwrap_or_else(|_| panic!("no {colour:?} picture within {within:?}: {:?}", video.stats()));
    assert_eq!((w, h), (320, 240));
}

fn connected(event: CallEvent) -> Option<SfuInfo> {
    match event {
        CallEvent::Connected(info) => Some(info),
        _ => None,
    }
}

fn video(event: CallEvent) -> Option<RemoteVideo> {
    match event {
        CallEvent::VideoSubscribed(video) => Some(video),
        _ => None,
    }
}

fn audio(event: CallEvent) -> Option<RemoteAudio> {
    match event {
        CallEvent::AudioSubscribed(audio) => Some(audio),
        _ => None,
    }
}

/// Decodes `audio` for `seconds` of frames; asserts `frequency` is at least 20 dB above a few
/// others and that the frames came at the real-time pace.
async fn hear_tone(audio: RemoteAudio, frequency: f64, seconds: u32) {
    let mut decoded = audio.decode(1);
    let started = tokio::time::Instant::now();
    let mut pcm = Vec::new();
    for _ in 0..seconds * 50 {
        let frame =
            tokio::time::timeout(WAIT, decoded.recv()).await.expect("in time").expect("open");
        assert_eq!(frame.channels, 1);
        pcm.extend_from_slice(&frame.samples);
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        (elapsed - f64::from(seconds)).abs() < 0.5,
        "{seconds} s of frames took {elapsed:.2} s: paced in real time"
    );
    let tail = &pcm[pcm.len() / 2..];
    let at = tone_power(tail, frequency);
    for other in [frequency * 0.5, frequency * 1.5, 3000.0] {
        let db = 10.0 * (at / tone_power(tail, other)).log10();
        assert!(
            db > 20.0,
            "{frequency} Hz only {db:.1} dB above {other} Hz; {:?}",
            decoded.stats()
        );
    }
    let stats = decoded.stats();
    assert!(stats.packets > u64::from(seconds) * 40, "{stats:?}");
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(
            |_| "matrix_sdk_rtc=info,matrix_sdk_rtc_livekit=info,livekit_str0m=info".into(),
        ))
        .with_test_writer()
        .try_init();
}

async fn two_bots() -> (StackInfo, Bot, Bot, String) {
    init_logs();
    let stack = StackInfo::require();
    let hs = Homeserver::new(&stack);
    let a = Bot::new(&stack, &hs, "reda", "REDA").await;
    let b = Bot::new(&stack, &hs, "blueb", "BLUEB").await;
    let room_id = hs.create_call_room(&a.user, &[&b.user]).await.unwrap();
    hs.join(&b.user, &room_id).await.unwrap();
    a.start_syncing().await;
    b.start_syncing().await;
    (stack, a, b, room_id)
}

const RED: Rgb = Rgb(255, 0, 0);
const BLUE: Rgb = Rgb(0, 0, 255);
const WAIT: Duration = Duration::from_secs(30);

/// One bot starts the call (`Always`), the other follows it; each decodes the other's colour,
/// knows the member behind it, and the follower leaves when the first has gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bots_see_each_other_and_the_follower_leaves_last() {
    let (stack, a, b, room_id) = two_bots().await;
    let mut red = Running::start(
        a.room(&room_id),
        Presence::Always,
        Some(RED),
        &stack.auth_service_url,
        false,
    );
    let own = red.next(WAIT, connected).await;
    assert!(own.publishing);
    assert_eq!(own.identity, format!("{}:{}", a.user.user_id, a.device), "the /sfu/get identity");
    assert_eq!(own.livekit_url, format!("{}/", stack.livekit_url));

    let mut blue = Running::start(
        b.room(&room_id),
        Presence::Follow,
        Some(BLUE),
        &stack.auth_service_url,
        false,
    );
    let mut from_red = blue.next(WAIT, video).await;
    wait_for_colour(&mut from_red, RED, WAIT).await;
    let member = member_of(&from_red).await;
    assert_eq!((member.user_id(), member.device_id()), (a.user.user_id.as_str(), "REDA"));
    let mut from_blue = red.next(WAIT, video).await;
    wait_for_colour(&mut from_blue, BLUE, WAIT).await;
    assert_eq!(member_of(&from_blue).await.device_id(), "BLUEB");

    // The first bot leaves; the follower is alone and leaves too.
    red.stop().await;
    let left = blue
        .next(WAIT, |e| match e {
            CallEvent::Disconnected { livekit_url, .. } => Some(livekit_url),
            _ => None,
        })
        .await;
    assert_eq!(left, format!("{}/", stack.livekit_url));
    let mut status = blue.status.clone();
    tokio::time::timeout(WAIT, status.wait_for(|s| matches!(s, DriverStatus::Idle)))
        .await
        .expect("the follower is idle again")
        .unwrap();
    blue.stop().await;
}

/// In an encrypted room, with per-participant media encryption as Element Call does it: the
/// bots exchange keys over Matrix (Olm-encrypted to-device), encrypt their frames, and each
/// decrypts and decodes the other's colour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bots_in_an_encrypted_room_see_each_other_through_encrypted_media() {
    init_logs();
    let stack = StackInfo::require();
    let hs = Homeserver::new(&stack);
    let a = Bot::new(&stack, &hs, "reda", "REDA").await;
    let b = Bot::new(&stack, &hs, "blueb", "BLUEB").await;
    let room_id = hs.create_encrypted_call_room(&a.user, &[&b.user]).await.unwrap();
    hs.join(&b.user, &room_id).await.unwrap();
    a.start_syncing().await;
    b.start_syncing().await;
    assert!(a.room(&room_id).encryption_state().is_encrypted());

    let e2ee = MediaEncryption::PerParticipant;
    let service = &stack.auth_service_url;
    let mut red =
        Running::start_with(a.room(&room_id), Presence::Always, Some(RED), service, false, e2ee);
    red.next(WAIT, connected).await;
    let mut blue =
        Running::start_with(b.room(&room_id), Presence::Follow, Some(BLUE), service, false, e2ee);
    let mut from_red = blue.next(WAIT, video).await;
    assert!(from_red.info().encrypted, "the track is announced as encrypted");
    wait_for_colour(&mut from_red, RED, WAIT).await;
    let mut from_blue = red.next(WAIT, video).await;
    assert!(from_blue.info().encrypted);
    wait_for_colour(&mut from_blue, BLUE, WAIT).await;
    blue.stop().await;
    red.stop().await;
}

/// A sticky member asks `/get_token`: its LiveKit identity is the MSC4195 hash of its user,
/// device and membership id, and the other bot still knows whose video it receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_member_connects_with_its_hashed_identity() {
    let (stack, a, b, room_id) = two_bots().await;
    let mut red = Running::start(
        a.room(&room_id),
        Presence::Always,
        Some(RED),
        &stack.auth_service_url,
        true,
    );
    let own = red.next(WAIT, connected).await;
    let mut blue =
        Running::start(b.room(&room_id), Presence::Follow, None, &stack.auth_service_url, false);
    let mut from_red = blue.next(WAIT, video).await;
    wait_for_colour(&mut from_red, RED, WAIT).await;
    let member = member_of(&from_red).await;
    assert_eq!(member.membership.dialect, matrix_sdk_rtc::membership::Dialect::Sticky);
    assert_eq!(
        own.identity,
        matrixrtc_identity::hashed_identity(&a.user.user_id, "REDA", &member.membership.member_id)
    );
    assert_eq!(from_red.info().participant_identity, own.identity);
    red.stop().await;
    blue.stop().await;
}

/// A member who publishes on the second SFU is received through a subscribe-only connection
/// there, while we publish on our own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_another_sfu_is_received_through_a_subscribe_only_connection() {
    let (stack, a, b, room_id) = two_bots().await;
    let second = stack.second_sfu().clone();
    let mut red = Running::start(
        a.room(&room_id),
        Presence::Always,
        Some(RED),
        &second.auth_service_url,
        false,
    );
    let theirs = red.next(WAIT, connected).await;
    assert_eq!(
        theirs.livekit_url,
        format!("{}/", second.livekit_url),
        "red publishes on the second SFU"
    );

    let mut blue = Running::start(
        b.room(&room_id),
        Presence::Follow,
        Some(BLUE),
        &stack.auth_service_url,
        false,
    );
    let mut sfus = Vec::new();
    let mut from_red = None;
    while from_red.is_none() || sfus.len() < 2 {
        blue.next(WAIT, |e| match e {
            CallEvent::Connected(info) => {
                sfus.push(info);
                Some(())
            }
            CallEvent::VideoSubscribed(v) => {
                from_red = Some(v);
                Some(())
            }
            _ => None,
        })
        .await;
    }
    let own = sfus.iter().find(|s| s.publishing).expect("blue's own SFU");
    assert_eq!(own.livekit_url, format!("{}/", stack.livekit_url));
    let remote = sfus.iter().find(|s| !s.publishing).expect("a subscribe-only connection");
    assert_eq!(remote.livekit_url, format!("{}/", second.livekit_url));
    let mut from_red = from_red.unwrap();
    assert_eq!(from_red.livekit_url(), remote.livekit_url);
    wait_for_colour(&mut from_red, RED, WAIT).await;
    assert_eq!(member_of(&from_red).await.device_id(), "REDA");

    // And red, on the second SFU, receives blue through its own subscribe-only connection.
    let mut from_blue = red.next(WAIT, video).await;
    wait_for_colour(&mut from_blue, BLUE, WAIT).await;
    assert_eq!(from_blue.livekit_url(), format!("{}/", stack.livekit_url));
    red.stop().await;
    blue.stop().await;
}

/// Audio both ways between bots: one publishes a 440 Hz tone (a generated source), the other
/// 1 kHz pushed by the application as PCM; each decodes the other's through the jitter
/// buffer, at the real-time pace, and knows whose it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bots_hear_each_other() {
    let (stack, a, b, room_id) = two_bots().await;
    let service = &stack.auth_service_url;
    let off = MediaEncryption::Off;
    let tone = Some(AudioFeed::tone(440.0));
    let mut first =
        Running::start_full(a.room(&room_id), Presence::Always, None, tone, service, false, off);
    first.next(WAIT, connected).await;
    let (pushed, pcm) = AudioFeed::pushed(1);
    let mut second = Running::start_full(
        b.room(&room_id),
        Presence::Follow,
        None,
        Some(pushed),
        service,
        false,
        off,
    );
    // The application's own 1 kHz, produced a little ahead of real time as a speech engine
    // would.
    let producer = tokio::spawn(async move {
        let mut tone = matrix_sdk_rtc_livekit::rtc_media::audio::ToneSource::new(1000.0, 0.5, 1);
        loop {
            pcm.send(&tone.next_samples()).await;
        }
    });
    let from_first = second.next(WAIT, audio).await;
    assert_eq!(from_first.info().kind, matrix_sdk_rtc_livekit::livekit_str0m::TrackKind::Audio);
    let from_second = first.next(WAIT, audio).await;
    let member = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(member) = from_first.member() {
                return member;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the member behind the audio becomes known");
    assert_eq!(member.device_id(), "REDA");
    tokio::join!(hear_tone(from_first, 440.0, 3), hear_tone(from_second, 1000.0, 3));
    producer.abort();
    second.stop().await;
    first.stop().await;
}
