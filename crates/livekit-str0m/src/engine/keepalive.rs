//! The signalling connection's keep-alive: pings at the server's interval, the round-trip time
//! measured from its pongs, and the silence after which the WebSocket counts as dead.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livekit_protocol as proto;
use tracing::trace;

/// What the keep-alive wants done now.
#[derive(Debug)]
pub(super) enum KeepAliveDue {
    /// Send this ping.
    Ping(proto::Ping),
    /// The server has been silent too long: the WebSocket looks dead (the reason, for logs).
    Silent(String),
}

/// Pings, pongs and the silence check of one session.
pub(super) struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    /// The engine's fixed (Instant, SystemTime) pair, for ping timestamps.
    clock_base: (Instant, SystemTime),
    next_ping: Instant,
    last_message: Instant,
    rtt_ms: i64,
    /// False between a lost signalling connection and a resume (pings wait).
    signal_up: bool,
}

impl KeepAlive {
    pub(super) fn new(
        interval: Duration,
        timeout: Duration,
        clock_base: (Instant, SystemTime),
        now: Instant,
    ) -> Self {
        Self {
            interval,
            timeout,
            clock_base,
            next_ping: now + interval,
            last_message: now,
            rtt_ms: 0,
            signal_up: true,
        }
    }

    /// A message arrived from the server.
    pub(super) fn on_message(&mut self, now: Instant) {
        self.last_message = now;
    }

    /// A pong answering the ping sent at `last_ping_timestamp` (Unix milliseconds).
    pub(super) fn on_pong(&mut self, last_ping_timestamp: i64, now: Instant) {
        self.rtt_ms = (unix_ms(self.clock_base, now) - last_ping_timestamp).max(0);
        trace!(rtt_ms = self.rtt_ms, "pong");
    }

    /// The WebSocket is gone: no pings and no silence check until [`KeepAlive::resume`].
    pub(super) fn signal_lost(&mut self) {
        self.signal_up = false;
    }

    /// A new WebSocket carries the session: start over from `now`.
    pub(super) fn resume(&mut self, now: Instant) {
        self.signal_up = true;
        self.last_message = now;
        self.next_ping = now + self.interval;
    }

    /// What is due at `now`: a silence first reports (once) and stops the pings until a resume.
    pub(super) fn poll(&mut self, now: Instant) -> Option<KeepAliveDue> {
        if !self.signal_up {
            return None;
        }
        if now.saturating_duration_since(self.last_message) >= self.timeout {
            self.signal_up = false;
            return Some(KeepAliveDue::Silent(format!(
                "no message from the server for {:?}",
                self.timeout
            )));
        }
        if now >= self.next_ping {
            self.next_ping = now + self.interval;
            let ping = proto::Ping { timestamp: unix_ms(self.clock_base, now), rtt: self.rtt_ms };
            return Some(KeepAliveDue::Ping(ping));
        }
        None
    }

    /// When [`KeepAlive::poll`] has something next, if anything.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.signal_up.then(|| self.next_ping.min(self.last_message + self.timeout))
    }
}

/// Milliseconds since the Unix epoch at `now`, from a fixed (Instant, SystemTime) pair.
fn unix_ms(base: (Instant, SystemTime), now: Instant) -> i64 {
    let wall = base.1 + now.saturating_duration_since(base.0);
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
