//! Leaving: the server hears our leave and drops the participant at once. (In a file of its own:
//! `lifecycle` counts the process's file descriptors, which other tests would disturb.)

mod common;

use std::time::Duration;

use common::{TestRoom, connected_with_track, init_logs};

/// An unpublish followed at once by a disconnect reaches the server as a leave: it drops the
/// participant at once instead of waiting for its peer connections to time out. (The program's
/// tests caught the server keeping such participants: the answer to the unpublish, without a
/// BUNDLE group, broke the session before the leave went out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_drops_the_participant_at_once_after_a_disconnect() {
    init_logs();
    let room = TestRoom::create("leave-at-once").await;
    for i in 0..10 {
        // As a program that stops: unpublish (the server answers with a new offer round, which
        // stays unread), then leave.
        let (connected, _events, track) = connected_with_track(&room, &format!("quick-{i}")).await;
        track.unpublish().await.unwrap();
        connected.disconnect().await;
    }
    let service = matrixrtc_auth::room_service::RoomServiceClient::new(
        &room.url().parse().unwrap(),
        room.stack.livekit_api_key.clone(),
        matrixrtc_auth::secret::Secret::new(room.stack.livekit_api_secret.clone()),
        Duration::from_secs(10),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<String> = service
            .list_participants(&room.name)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.identity)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in the room after leaving: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
