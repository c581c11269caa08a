//! What the relay does to each datagram and each TCP chunk, without I/O: the fault settings, a
//! lane per direction of a flow that decides (time and a random number in, drop or deliver-at
//! out), and the random numbers.
//!
//! * Loss drops UDP datagrams with the given probability, in each direction on its own. TCP is
//!   never dropped (its own retransmission would hide the loss behind delay).
//! * Delay holds every datagram and every TCP chunk for the given time, in each direction (a
//!   round trip grows by twice the delay). A lane never delivers out of order: when the delay
//!   shrinks, later data waits for earlier data.
//! * A cut is a pulled cable: UDP datagrams are dropped, whether they arrive during the cut or
//!   were on their way when it began; TCP data stops where it is, connections stay open, and
//!   flows on once the cable is back (as TCP's retransmissions would deliver it).

use std::time::{Duration, Instant};

/// The faults of the path, changeable while the relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Faults {
    /// The probability of dropping a UDP datagram, per direction (0 to 1).
    pub(crate) loss: f64,
    /// Added to the way of every datagram and TCP chunk, per direction.
    pub(crate) delay: Duration,
    /// Nothing gets through: UDP is dropped, TCP waits.
    pub(crate) cut: bool,
}

impl Faults {
    /// No faults: every byte goes through at once.
    pub(crate) const NONE: Faults = Faults { loss: 0.0, delay: Duration::ZERO, cut: false };

    /// These faults with `loss` clamped to 0..=1 (NaN counts as 0).
    pub(crate) fn sanitized(self) -> Faults {
        let loss = if self.loss.is_nan() { 0.0 } else { self.loss.clamp(0.0, 1.0) };
        Faults { loss, ..self }
    }
}

/// What happens to a UDP datagram that arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatagramVerdict {
    /// Send it on at this time (now, or later by the delay).
    DeliverAt(Instant),
    /// Drop it: lost at random, or the path is cut.
    Drop(DropReason),
}

/// What happens to a TCP chunk that arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkVerdict {
    /// Send it on at this time (now, or later by the delay).
    DeliverAt(Instant),
    /// Hold it until the path is back, then ask again (during a cut).
    Hold,
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The random loss.
    Loss,
    /// The path is cut.
    Cut,
}

/// One direction of one flow (a UDP mapping or a TCP connection): keeps its deliveries in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lane {
    /// The delivery time given last; nothing after it is delivered before it.
    last: Option<Instant>,
}

impl Lane {
    /// A lane with nothing in flight.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The verdict on a UDP datagram arriving at `now`; `random` is uniform in [0, 1).
    pub(crate) fn datagram(
        &mut self,
        faults: &Faults,
        now: Instant,
        random: f64,
    ) -> DatagramVerdict {
        if faults.cut {
            return DatagramVerdict::Drop(DropReason::Cut);
        }
        if random < faults.loss {
            return DatagramVerdict::Drop(DropReason::Loss);
        }
        DatagramVerdict::DeliverAt(self.schedule(faults, now))
    }

    /// The verdict on a TCP chunk arriving (or asked about again) at `now`.
    pub(crate) fn chunk(&mut self, faults: &Faults, now: Instant) -> ChunkVerdict {
        if faults.cut {
            return ChunkVerdict::Hold;
        }
        ChunkVerdict::DeliverAt(self.schedule(faults, now))
    }

    fn schedule(&mut self, faults: &Faults, now: Instant) -> Instant {
        let at = (now + faults.delay).max(self.last.unwrap_or(now));
        self.last = Some(at);
        at
    }
}

/// What happens, at its delivery time, to a datagram or chunk that was on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send it now.
    Send,
    /// Drop it: a datagram caught by a cut on its way.
    Drop,
    /// Keep it until the path is back: a TCP chunk caught by a cut on its way.
    Hold,
}

/// What to do with a UDP datagram whose delivery time has come.
pub(crate) fn datagram_due(faults: &Faults) -> Due {
    if faults.cut { Due::Drop } else { Due::Send }
}

/// What to do with a TCP chunk whose delivery time has come.
pub(crate) fn chunk_due(faults: &Faults) -> Due {
    if faults.cut { Due::Hold } else { Due::Send }
}

/// The seeded generator of the relay's random loss.
pub(crate) type Random = rtc_test_support::XorShift64;

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_faults_everything_goes_at_once() {
        let now = Instant::now();
        let mut lane = Lane::new();
        assert_eq!(lane.datagram(&Faults::NONE, now, 0.0), DatagramVerdict::DeliverAt(now));
        assert_eq!(lane.chunk(&Faults::NONE, now), ChunkVerdict::DeliverAt(now));
        assert_eq!(datagram_due(&Faults::NONE), Due::Send);
        assert_eq!(chunk_due(&Faults::NONE), Due::Send);
    }

    #[test]
    fn loss_drops_datagrams_below_the_probability_and_never_chunks() {
        let now = Instant::now();
        let faults = Faults { loss: 0.2, ..Faults::NONE };
        let mut lane = Lane::new();
        assert_eq!(lane.datagram(&faults, now, 0.1999), DatagramVerdict::Drop(DropReason::Loss));
        assert_eq!(lane.datagram(&faults, now, 0.2), DatagramVerdict::DeliverAt(now));
        assert_eq!(lane.chunk(&faults, now), ChunkVerdict::DeliverAt(now));
        let all = Faults { loss: 1.0, ..Faults::NONE };
        assert_eq!(lane.datagram(&all, now, 0.999_999), DatagramVerdict::Drop(DropReason::Loss));
    }

    #[test]
    fn delay_holds_each_datagram_and_chunk_for_the_delay() {
        let now = Instant::now();
        let faults = Faults { delay: 200 * MS, ..Faults::NONE };
        let mut lane = Lane::new();
        assert_eq!(lane.datagram(&faults, now, 0.5), DatagramVerdict::DeliverAt(now + 200 * MS));
        assert_eq!(lane.chunk(&faults, now + 10 * MS), ChunkVerdict::DeliverAt(now + 210 * MS));
    }

    #[test]
    fn a_shrinking_delay_never_reorders_a_lane() {
        let now = Instant::now();
        let mut lane = Lane::new();
        let long = Faults { delay: 200 * MS, ..Faults::NONE };
        assert_eq!(lane.chunk(&long, now), ChunkVerdict::DeliverAt(now + 200 * MS));
        // The delay goes: what comes next still waits for what came first.
        assert_eq!(
            lane.chunk(&Faults::NONE, now + 50 * MS),
            ChunkVerdict::DeliverAt(now + 200 * MS)
        );
        assert_eq!(
            lane.chunk(&Faults::NONE, now + 300 * MS),
            ChunkVerdict::DeliverAt(now + 300 * MS)
        );
        // Another lane has its own order.
        assert_eq!(Lane::new().chunk(&Faults::NONE, now), ChunkVerdict::DeliverAt(now));
    }

    #[test]
    fn a_cut_drops_datagrams_and_holds_chunks_until_restored() {
        let now = Instant::now();
        let cut = Faults { cut: true, ..Faults::NONE };
        let mut lane = Lane::new();
        assert_eq!(lane.datagram(&cut, now, 0.99), DatagramVerdict::Drop(DropReason::Cut));
        assert_eq!(lane.chunk(&cut, now), ChunkVerdict::Hold);
        assert_eq!(datagram_due(&cut), Due::Drop);
        assert_eq!(chunk_due(&cut), Due::Hold);
        // Restored: the held chunk goes, with the delay counted from when it is asked again.
        let later = now + 20_000 * MS;
        let delayed = Faults { delay: 200 * MS, ..Faults::NONE };
        assert_eq!(lane.chunk(&delayed, later), ChunkVerdict::DeliverAt(later + 200 * MS));
    }

    #[test]
    fn loss_out_of_range_is_clamped() {
        assert_eq!(Faults { loss: -1.0, ..Faults::NONE }.sanitized().loss, 0.0);
        assert_eq!(Faults { loss: 7.0, ..Faults::NONE }.sanitized().loss, 1.0);
        assert_eq!(Faults { loss: f64::NAN, ..Faults::NONE }.sanitized().loss, 0.0);
    }
}
