//! Connect/disconnect cycles leave no file descriptor and no thread behind; dropping a room
//! closes its sockets too.

mod common;

use std::time::Duration;

use common::{TestRoom, connected_with_track, init_logs};
use livekit_str0m::{EncodedVideoFrame, Room};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

fn fd_targets() -> Vec<String> {
    let mut all: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok())
        .map(|e| {
            format!(
                "{} -> {:?}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path()).ok()
            )
        })
        .collect();
    all.sort();
    all
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").expect("/proc/self/task").count()
}

/// One connection that publishes a track and writes a few frames.
async fn cycle(room: &TestRoom, identity: &str) -> Room {
    let (connected, _events, track) = connected_with_track(room, identity).await;
    for i in 0..3u32 {
        // A VP8 keyframe header is enough for the packetiser.
        let data = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x40, 0x00, 0, 0, 0, 0];
        let _ = track.write(EncodedVideoFrame {
            data,
            keyframe: true,
            timestamp: Duration::from_millis(33) * i,
        });
    }
    connected
}

/// Waits (bounded) for a count to come back to its baseline.
async fn settles(what: &str, baseline: usize, count: fn() -> usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count() > baseline && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(count() <= baseline, "{what}: {} now, {baseline} before", count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_cycles_leave_fds_and_threads_where_they_were() {
    init_logs();
    let room = TestRoom::create("cycles").await;
    // Warm-up: one-time initialisation (TLS providers, lazy statics) is not a leak.
    cycle(&room, "warm-up").await.disconnect().await;
    let (fds, tasks) = (open_fds(), threads());
    let before = fd_targets();
    for i in 0..20 {
        let connected = cycle(&room, &format!("cycle-{i}")).await;
        assert!(open_fds() > fds, "a connection has sockets open");
        connected.disconnect().await;
    }
    // `disconnect` returns after the task ended: nothing to wait for.
    assert_eq!(
        open_fds(),
        fds,
        "file descriptors after 20 disconnects: {:#?}\nbefore: {before:#?}",
        fd_targets()
    );
    settles("threads", tasks, threads).await;
    eprintln!(
        "after 20 cycles: {} fds (was {fds}), {} threads (was {tasks})",
        open_fds(),
        threads()
    );

    // Dropping without `disconnect` closes everything too, within a bounded time.
    for i in 0..5 {
        drop(cycle(&room, &format!("dropped-{i}")).await);
    }
    settles("file descriptors after drops", fds, open_fds).await;
    settles("threads after drops", tasks, threads).await;
}
