//! The room's event queue: bounded whatever the server sends and however slowly the application
//! reads.
//!
//! The policy for a reader that falls behind:
//! - speaker updates are merged: a new [`RoomEvent::ActiveSpeakersChanged`] joins the one still
//!   waiting at the back of the queue (or, when the queue is full, any waiting one), newest
//!   level per participant;
//! - any other event that finds the queue full is dropped and counted, and the reader gets one
//!   [`RoomEvent::Lagged`] before the next event it reads;
//! - the closing [`RoomEvent::Disconnected`] always arrives, last.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::api::RoomEvent;
use crate::engine::Speaker;
use crate::error::DisconnectCause;

/// Events held for the application before new ones are dropped.
pub(crate) const EVENT_QUEUE_CAPACITY: usize = 256;
/// Participants one merged speaker update may name; a server naming more in one burst is
/// either hostile or broken, and the rest count as missed.
const MAX_MERGED_SPEAKERS: usize = 1024;

#[derive(Default)]
struct Queue {
    events: VecDeque<RoomEvent>,
    missed: u64,
    last: Option<RoomEvent>,
    closed: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    ready: Notify,
    capacity: usize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The stream of [`RoomEvent`]s.
pub struct RoomEvents(Arc<Inner>);

impl std::fmt::Debug for RoomEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomEvents").field("queued", &self.0.lock().events.len()).finish()
    }
}

impl RoomEvents {
    /// The next event; `None` after the room is gone.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        let inner = self.0.clone();
        loop {
            let ready = inner.ready.notified();
            if let Some(event) = self.try_recv() {
                return Some(event);
            }
            if inner.lock().closed {
                return None;
            }
            ready.await;
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<RoomEvent> {
        let mut queue = self.0.lock();
        if queue.missed > 0 {
            let missed = std::mem::take(&mut queue.missed);
            return Some(RoomEvent::Lagged { missed });
        }
        queue.events.pop_front().or_else(|| queue.last.take())
    }
}

/// The connection's end of the queue. Dropping it ends the stream (after what is queued).
pub(crate) struct EventSender(Arc<Inner>);

impl EventSender {
    pub(crate) fn new(capacity: usize) -> (EventSender, RoomEvents) {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        });
        (EventSender(inner.clone()), RoomEvents(inner))
    }

    /// Queues an event, following the module's policy when the reader is behind.
    pub(crate) fn send(&self, event: RoomEvent) {
        let mut queue = self.0.lock();
        if queue.closed {
            return;
        }
        let event = match event {
            RoomEvent::ActiveSpeakersChanged(speakers) => {
                match merge_speakers(&mut queue, speakers, self.0.capacity) {
                    Some(speakers) => RoomEvent::ActiveSpeakersChanged(speakers),
                    None => {
                        drop(queue);
                        self.0.ready.notify_one();
                        return;
                    }
                }
            }
            other => other,
        };
        if queue.events.len() >= self.0.capacity {
            queue.missed += 1;
            if queue.missed == 1 {
                tracing::debug!("room events dropped: the application is not reading them");
            }
            return;
        }
        queue.events.push_back(event);
        drop(queue);
        self.0.ready.notify_one();
    }

    /// Queues the last event, [`RoomEvent::Disconnected`]; nothing is queued after it.
    pub(crate) fn finish(&self, cause: DisconnectCause) {
        let mut queue = self.0.lock();
        if queue.closed {
            return;
        }
        queue.last = Some(RoomEvent::Disconnected(cause));
        queue.closed = true;
        drop(queue);
        self.0.ready.notify_one();
    }

    /// Events waiting to be read (tests and logs).
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.0.lock().events.len()
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_one();
    }
}

/// Merges `speakers` into a waiting speaker update: the one at the back, or when the queue is
/// full any one. `Some` hands the update back to be queued as an event of its own.
fn merge_speakers(
    queue: &mut Queue,
    speakers: Vec<Speaker>,
    capacity: usize,
) -> Option<Vec<Speaker>> {
    let full = queue.events.len() >= capacity;
    let target = if full {
        queue.events.iter_mut().rev().find_map(|e| match e {
            RoomEvent::ActiveSpeakersChanged(waiting) => Some(waiting),
            _ => None,
        })
    } else {
        match queue.events.back_mut() {
            Some(RoomEvent::ActiveSpeakersChanged(waiting)) => Some(waiting),
            _ => None,
        }
    };
    let Some(waiting) = target else { return Some(speakers) };
    for speaker in speakers {
        if let Some(known) = waiting.iter_mut().find(|s| s.sid == speaker.sid) {
            *known = speaker;
        } else if waiting.len() < MAX_MERGED_SPEAKERS {
            waiting.push(speaker);
        } else {
            queue.missed += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ConnectionState;

    fn speaker(sid: &str, level: f32) -> Speaker {
        Speaker { sid: sid.into(), identity: None, level, active: level > 0.0 }
    }

    fn speakers_of(event: RoomEvent) -> Vec<(String, f32)> {
        match event {
            RoomEvent::ActiveSpeakersChanged(s) => {
                s.into_iter().map(|s| (s.sid, s.level)).collect()
            }
            other => panic!("expected speakers, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn events_arrive_in_order_then_the_stream_ends() {
        let (tx, mut rx) = EventSender::new(8);
        tx.send(RoomEvent::ConnectionStateChanged(ConnectionState::Reconnecting));
        tx.send(RoomEvent::ConnectionStateChanged(ConnectionState::Connected));
        tx.finish(DisconnectCause::ClientInitiated);
        tx.send(RoomEvent::TrackUnsubscribed { track_sid: "after the end".into() });
        assert!(matches!(
            rx.recv().await,
            Some(RoomEvent::ConnectionStateChanged(ConnectionState::Reconnecting))
        ));
        assert!(matches!(
            rx.recv().await,
            Some(RoomEvent::ConnectionStateChanged(ConnectionState::Connected))
        ));
        assert!(matches!(
            rx.recv().await,
            Some(RoomEvent::Disconnected(DisconnectCause::ClientInitiated))
        ));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_up() {
        let (tx, mut rx) = EventSender::new(8);
        let reader = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send(RoomEvent::TrackUnsubscribed { track_sid: "TR_1".into() });
        let event = reader.await.expect("reader");
        assert!(
            matches!(event, Some(RoomEvent::TrackUnsubscribed { track_sid }) if track_sid == "TR_1")
        );
    }

    #[test]
    fn speaker_updates_merge_newest_level_per_participant() {
        let (tx, mut rx) = EventSender::new(8);
        tx.send(RoomEvent::ActiveSpeakersChanged(vec![speaker("PA_a", 0.5)]));
        tx.send(RoomEvent::ActiveSpeakersChanged(vec![speaker("PA_b", 0.2), speaker("PA_a", 0.9)]));
        assert_eq!(tx.queued(), 1);
        assert_eq!(
            speakers_of(rx.try_recv().expect("merged")),
            vec![("PA_a".to_owned(), 0.9), ("PA_b".to_owned(), 0.2)]
        );
        // Another event in between keeps the order: the next update is an event of its own.
        tx.send(RoomEvent::ActiveSpeakersChanged(vec![speaker("PA_a", 0.1)]));
        tx.send(RoomEvent::TrackUnsubscribed { track_sid: "TR_1".into() });
        tx.send(RoomEvent::ActiveSpeakersChanged(vec![speaker("PA_a", 0.3)]));
        assert_eq!(tx.queued(), 3);
    }

    #[test]
    fn ten_thousand_speaker_updates_to_a_reader_that_never_reads_stay_bounded() {
        let (tx, mut rx) = EventSender::new(EVENT_QUEUE_CAPACITY);
        for i in 0..10_000u32 {
            // Participants come and go meanwhile; their events take the room that is left.
            if i % 7 == 0 {
                tx.send(RoomEvent::TrackUnsubscribed { track_sid: format!("TR_{i}") });
            }
            let level = (i % 100) as f32 / 100.0;
            tx.send(RoomEvent::ActiveSpeakersChanged(vec![
                speaker(&format!("PA_{}", i % 5), level),
                speaker(&format!("PA_hostile_{i}"), level),
            ]));
        }
        assert!(tx.queued() <= EVENT_QUEUE_CAPACITY, "queued {}", tx.queued());
        let mut named = 0;
        let mut lagged = 0;
        while let Some(event) = rx.try_recv() {
            match event {
                RoomEvent::ActiveSpeakersChanged(s) => {
                    assert!(s.len() <= MAX_MERGED_SPEAKERS);
                    named += s.len();
                }
                RoomEvent::Lagged { missed } => lagged += missed,
                RoomEvent::TrackUnsubscribed { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(lagged > 0, "a full queue reports what it dropped");
        assert!(named <= EVENT_QUEUE_CAPACITY * MAX_MERGED_SPEAKERS);
    }

    #[test]
    fn the_last_event_survives_a_full_queue() {
        let (tx, mut rx) = EventSender::new(2);
        for i in 0..5 {
            tx.send(RoomEvent::TrackUnsubscribed { track_sid: format!("TR_{i}") });
        }
        tx.finish(DisconnectCause::ClientInitiated);
        let mut seen = Vec::new();
        while let Some(event) = rx.try_recv() {
            seen.push(format!("{event:?}"));
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen[0].contains("Lagged { missed: 3 }"), "{seen:?}");
        assert!(seen[3].contains("Disconnected"), "{seen:?}");
    }
}
