//! Opus audio through the real LiveKit server between Rust clients: a 440 Hz tone goes out with
//! its level, arrives as packets 20 ms apart that decode to the same tone, the server names the
//! sender as the active speaker to a participant who joined after it started; and the same
//! encrypted with LiveKit's frame encryption.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestRoom, init_logs};
use livekit_str0m::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};
use livekit_str0m::media::encode_audio;
use livekit_str0m::{
    AudioTrackOptions, LocalAudioTrack, RemoteAudioTrack, RemoteTrack, Room, RoomEvent, RoomEvents,
    RoomOptions, TrackKind, TrackSource,
};
use rtc_media::audio::{
    FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusEncoderConfig, ToneSource, tone_power,
};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

/// Writes a 440 Hz tone into `track`, one Opus packet per 20 ms with its level, until the track
/// closes.
fn spawn_tone(track: LocalAudioTrack) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let mut tone = ToneSource::new(440.0, 0.5, 1).swelling(0.5, Duration::from_secs(2));
        let mut encoder = OpusEncoder::with_config(&OpusEncoderConfig::default()).expect("encoder");
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        let mut written = 0u64;
        for n in 0u32.. {
            ticker.tick().await;
            let timestamp = Duration::from_millis(20) * n;
            let encoded = encode_audio(&mut encoder, &tone.next_samples(), timestamp);
            let Some(frame) = encoded.expect("encodes") else { continue };
            match track.write(frame) {
                Ok(()) => written += 1,
                Err(livekit_str0m::TrackError::Closed) => break,
                Err(_) => {}
            }
        }
        written
    })
}

async fn connect(
    room: &TestRoom,
    identity: &str,
    keys: Option<Arc<KeyProvider>>,
) -> (Room, RoomEvents) {
    let options = RoomOptions {
        frame_cryptor: keys.map(|keys| Arc::new(GcmFrameCryptor::new(keys)) as _),
        ..Default::default()
    };
    Room::connect(room.url(), &room.token(identity), options).await.expect("connects")
}

async fn next_audio(events: &mut RoomEvents) -> RemoteAudioTrack {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await.expect("room events end") {
                RoomEvent::TrackSubscribed(RemoteTrack::Audio(track)) => return track,
                RoomEvent::Disconnected(cause) => panic!("disconnected: {cause}"),
                _ => {}
            }
        }
    })
    .await
    .expect("an audio track is subscribed in time")
}

/// Receives `count` packets, checks their spacing and level, decodes them; the PCM.
async fn receive_tone(track: &mut RemoteAudioTrack, count: usize) -> Vec<i16> {
    let mut decoder = OpusDecoder::new(1).expect("decoder");
    let mut pcm = Vec::new();
    let mut last: Option<u64> = None;
    let mut steps = Vec::new();
    for _ in 0..count {
        let packet =
            tokio::time::timeout(WAIT, track.recv()).await.expect("in time").expect("open");
        // LiveKit reads the level for its speaker detection; it may or may not pass it on.
        if let Some(level) = packet.level {
            assert!(level.dbov < 20 && level.voice, "a loud tone: {level:?}");
        }
        if let Some(last) = last {
            steps.push(packet.rtp_timestamp - last);
        }
        last = Some(packet.rtp_timestamp);
        pcm.extend(decoder.decode(Some(&packet.data)).expect("decodes"));
    }
    let regular = steps.iter().filter(|&&s| s == FRAME_SAMPLES as u64).count();
    assert!(regular * 10 >= steps.len() * 9, "packets 20 ms apart: {steps:?}");
    pcm
}

fn assert_tone(pcm: &[i16]) {
    let tail = &pcm[pcm.len() / 2..];
    let at_440 = tone_power(tail, 440.0);
    for other in [220.0, 660.0, 1000.0] {
        let ratio_db = 10.0 * (at_440 / tone_power(tail, other)).log10();
        assert!(ratio_db > 20.0, "440 Hz only {ratio_db:.1} dB above {other} Hz");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_arrives_as_opus_with_levels_and_makes_its_sender_the_active_speaker() {
    init_logs();
    let room = TestRoom::create("audio").await;
    let (alice, _alice_events) = connect(&room, "alice", None).await;
    let track = alice.publish_audio(AudioTrackOptions::default()).await.expect("publish");
    let writer = spawn_tone(track.clone());
    // Bob comes late: LiveKit announces levels only when they change, and the swelling tone's
    // do, as a voice's would.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (bob, mut bob_events) = connect(&room, "bob", None).await;

    let mut remote = next_audio(&mut bob_events).await;
    assert_eq!(remote.info().kind, TrackKind::Audio);
    assert_eq!(remote.info().source, Some(TrackSource::Microphone));
    assert_eq!(remote.info().participant_identity, "alice");
    let pcm = receive_tone(&mut remote, 100).await;
    assert_tone(&pcm);

    // The server names alice as speaking, from the levels in her packets.
    tokio::time::timeout(WAIT, async {
        loop {
            match bob_events.recv().await.expect("events") {
                RoomEvent::ActiveSpeakersChanged(speakers)
                    if speakers.iter().any(|s| {
                        s.identity.as_deref() == Some("alice") && s.active && s.level > 0.1
                    }) =>
                {
                    return;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("alice becomes the active speaker");

    track.unpublish().await.expect("unpublish");
    let written = writer.await.expect("writer");
    assert!(written >= 100);
    alice.disconnect().await;
    bob.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_audio_is_decrypted_by_key_holders() {
    init_logs();
    let room = TestRoom::create("audio-e2ee").await;
    let key = [0x33; 16];
    let alice_keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
    let bob_keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
    alice_keys.set_key("alice", 0, &key).unwrap();
    bob_keys.set_key("alice", 0, &key).unwrap();
    let (alice, _alice_events) = connect(&room, "alice", Some(alice_keys)).await;
    let (bob, mut bob_events) = connect(&room, "bob", Some(bob_keys)).await;
    let options = AudioTrackOptions { encrypted: true, ..Default::default() };
    let track = alice.publish_audio(options).await.expect("publish");
    let writer = spawn_tone(track.clone());

    let mut remote = next_audio(&mut bob_events).await;
    assert!(remote.info().encrypted);
    let pcm = receive_tone(&mut remote, 60).await;
    assert_tone(&pcm);
    assert_eq!(remote.frames_undecryptable(), 0);

    track.unpublish().await.expect("unpublish");
    writer.await.expect("writer");
    alice.disconnect().await;
    bob.disconnect().await;
}
