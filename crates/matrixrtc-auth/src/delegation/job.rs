//! The life of one delegated delayed leave, as a sans-IO state machine.
//!
//! A [`Job`] takes the time and what the outside world said (LiveKit webhooks, participant
//! lookups, homeserver answers) and says what to do next ([`Action`]) and when to wake it up.
//! It never does I/O itself, so every path is tested with a made-up clock.
//!
//! The life of a job:
//!
//! 1. **Waiting** for the participant: it looks the participant up on the SFU at once (clients
//!    delegate after connecting, so the `participant_joined` webhook has usually gone by), then
//!    again with backoff, and listens for `participant_joined`. A departure seen while waiting
//!    changes nothing: it may be an earlier connection of the same identity. If the participant
//!    has not appeared after `min(1 h, delay)`, the leave is sent.
//! 2. **Connected**: the delayed leave is restarted at once (to line the homeserver's timer up),
//!    then every 80 % of the delay, each restart retried with backoff until the delay would run
//!    out. With a sanity interval, the participant is also looked up on the SFU now and then.
//!    A departure of the connected session (`participant_left`, `participant_connection_aborted`)
//!    is confirmed with one lookup: a participant still there is a newer connection of the same
//!    identity (LiveKit removes the old one before it reports it), which the job then follows.
//!    A participant the lookup does not find, or that the sanity check finds gone, is
//!    **Sending**.
//! 3. **Sending** the leave, retried with backoff while the homeserver's timer would not have
//!    sent it anyway (at least 1 s, at most 1 h).
//!
//! A restart answered `404` means the delayed event is gone (the member sent or cancelled it,
//! or it fired): the job ends without sending. A send answered `404` means the same and is a
//! success.

use std::time::{Duration, Instant};

/// The shortest time between two restarts, whatever the delay.
pub const MIN_RESTART_INTERVAL: Duration = Duration::from_secs(1);
/// The longest delay taken into account (longer ones are treated as this).
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest time a job waits for its participant to connect.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// The first retry interval of lookups, restarts and sends.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest retry interval.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the job asks the outside world to do; exactly one is in flight at a time, and its
/// answer must be given back before the next [`Job::poll_action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Look the participant up on the SFU (`RoomService.GetParticipant`); answer with
    /// [`Job::handle_lookup`].
    LookUp,
    /// Restart the delayed leave on the homeserver; answer with [`Job::handle_homeserver`].
    Restart,
    /// Send the delayed leave now; answer with [`Job::handle_homeserver`].
    Send,
}

/// The answer to [`Action::LookUp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The participant is in the room, with this session id.
    Present {
        /// Its session id (`PA_…`).
        sid: String,
    },
    /// The SFU does not know the participant (or its room).
    Absent,
    /// The SFU could not be asked.
    Failed,
}

/// The homeserver's answer to [`Action::Restart`] or [`Action::Send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeserverAnswer {
    /// Done.
    Done,
    /// The delayed event does not exist (any more).
    NotFound,
    /// Try again, after at least this long when the homeserver said so (`429`).
    RetryLater(Option<Duration>),
}

/// A participant event from the SFU, for this job's room and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuEvent {
    /// The participant's connection became active.
    Joined {
        /// Its session id, empty if unknown.
        sid: String,
    },
    /// A connection of the participant ended.
    Left {
        /// Its session id, empty if unknown.
        sid: String,
    },
}

/// Why the job sent the leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendReason {
    /// The participant left the SFU or its connection died.
    Left,
    /// The sanity check no longer found the participant.
    Gone,
    /// The participant never connected while the job waited.
    NeverConnected,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The service sent the leave.
    Sent(SendReason),
    /// The leave was to be sent, but the homeserver no longer had it (sent or cancelled).
    AlreadyGone(SendReason),
    /// A restart found the delayed event gone: the member sent or cancelled it, or it fired.
    EventGone,
    /// The homeserver could not be reached to restart until the delay ran out: its own timer
    /// decides.
    RestartsFailed,
    /// The homeserver could not be reached to send: its own timer will.
    SendFailed(SendReason),
}

/// Exponential backoff (×1.5, jittered by ±50 %).
#[derive(Debug, Clone)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: INITIAL_BACKOFF }
    }

    fn next(&mut self, rng: &mut Rng) -> Duration {
        let base = self.next;
        self.next = (self.next.mul_f64(1.5)).min(MAX_BACKOFF);
        base.mul_f64(0.5 + rng.unit())
    }
}

/// A small xorshift generator for the jitter (no cryptographic use).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone)]
enum State {
    Waiting {
        until: Instant,
        next_lookup: Instant,
        backoff: Backoff,
    },
    Connected {
        sid: String,
        next_restart: Instant,
        /// Set while restarts fail.
        restart_backoff: Option<Backoff>,
        next_check: Option<Instant>,
        /// A departure is being confirmed by a lookup.
        confirming: bool,
    },
    Sending {
        reason: SendReason,
        until: Instant,
        next_try: Instant,
        backoff: Backoff,
    },
    Finished(Outcome),
}

/// One delegated delayed leave; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Job {
    delay: Duration,
    sanity_check: Option<Duration>,
    state: State,
    /// When the homeserver's timer fires if nobody restarts it.
    deadline: Instant,
    pending: Option<Action>,
    in_flight: Option<Action>,
    rng: Rng,
}

impl Job {
    /// A job for a delayed leave of `delay`, delegated at `now`. With `sanity_check`, a
    /// connected participant is looked up on the SFU at that interval. `seed` seeds the jitter.
    pub fn new(now: Instant, delay: Duration, sanity_check: Option<Duration>, seed: u64) -> Self {
        let delay = delay.min(MAX_DELAY);
        let mut job = Self {
            delay,
            sanity_check: sanity_check.filter(|i| !i.is_zero()),
            state: State::Waiting {
                until: now + delay.min(MAX_WAIT),
                next_lookup: now,
                backoff: Backoff::new(),
            },
            deadline: now + delay,
            pending: None,
            in_flight: None,
            rng: Rng(seed | 1),
        };
        job.schedule(now);
        job
    }

    /// The next thing to do, if any is due; it is then in flight until answered.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.pending.take()?;
        self.in_flight = Some(action);
        Some(action)
    }

    /// When [`Job::handle_timeout`] should be called next (`None`: only when an answer or an
    /// event comes in, or never once finished).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() || self.pending.is_some() {
            return None;
        }
        match &self.state {
            State::Waiting { until, next_lookup, .. } => Some((*until).min(*next_lookup)),
            State::Connected { next_restart, next_check, restart_backoff, .. } => {
                let mut at = (*next_restart).min(next_check.unwrap_or(*next_restart));
                if restart_backoff.is_some() {
                    at = at.min(self.deadline);
                }
                Some(at)
            }
            State::Sending { until, next_try, .. } => Some((*until).min(*next_try)),
            State::Finished(_) => None,
        }
    }

    /// How the job ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.state {
            State::Finished(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Whether the job has seen its participant connected (and not yet gone).
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.state {
            State::Waiting { until, .. } if now >= *until => {
                self.start_sending(now, SendReason::NeverConnected);
            }
            State::Connected { restart_backoff: Some(_), .. }
                if now >= self.deadline && self.in_flight.is_none() =>
            {
                self.state = State::Finished(Outcome::RestartsFailed);
            }
            State::Sending { until, reason, .. } if now >= *until && self.in_flight.is_none() => {
                self.state = State::Finished(Outcome::SendFailed(*reason));
            }
            _ => {}
        }
        self.schedule(now);
    }

    /// An SFU event for this job's participant.
    pub fn handle_sfu_event(&mut self, now: Instant, event: SfuEvent) {
        match (&mut self.state, event) {
            (State::Waiting { .. }, SfuEvent::Joined { sid }) => self.connect(now, sid),
            (State::Connected { sid, .. }, SfuEvent::Joined { sid: new }) => *sid = new,
            // A departure of an older session of the same identity changes nothing.
            (State::Connected { sid, confirming, .. }, SfuEvent::Left { sid: gone })
                if gone.is_empty() || sid.is_empty() || gone == *sid =>
            {
                *confirming = true;
            }
            _ => {}
        }
        self.schedule(now);
    }

    /// The answer to [`Action::LookUp`].
    pub fn handle_lookup(&mut self, now: Instant, lookup: Lookup) {
        if self.in_flight != Some(Action::LookUp) {
            return;
        }
        self.in_flight = None;
        let interval = self.sanity_check;
        match (&mut self.state, lookup) {
            (State::Waiting { .. }, Lookup::Present { sid }) => self.connect(now, sid),
            (State::Waiting { until, next_lookup, backoff }, _) => {
                *next_lookup = (now + backoff.next(&mut self.rng)).min(*until);
            }
            (
                State::Connected { sid, confirming, next_check, .. },
                Lookup::Present { sid: new },
            ) => {
                *sid = new;
                *confirming = false;
                *next_check = interval.map(|i| now + i);
            }
            (State::Connected { confirming: true, .. }, Lookup::Absent | Lookup::Failed) => {
                // The departure stands (an SFU that cannot be asked does not contradict it).
                self.start_sending(now, SendReason::Left);
            }
            (State::Connected { .. }, Lookup::Absent) => {
                self.start_sending(now, SendReason::Gone);
            }
            (State::Connected { next_check, .. }, Lookup::Failed) => {
                *next_check = interval.map(|i| now + i);
            }
            _ => {}
        }
        self.schedule(now);
    }

    /// The homeserver's answer to [`Action::Restart`] or [`Action::Send`].
    pub fn handle_homeserver(&mut self, now: Instant, answer: HomeserverAnswer) {
        let Some(action @ (Action::Restart | Action::Send)) = self.in_flight else {
            return;
        };
        self.in_flight = None;
        let restart_interval = self.delay.mul_f64(0.8).max(MIN_RESTART_INTERVAL);
        match (&mut self.state, action, answer) {
            (State::Connected { next_restart, restart_backoff, .. }, Action::Restart, answer) => {
                match answer {
                    HomeserverAnswer::Done => {
                        self.deadline = now + self.delay;
                        *next_restart = now + restart_interval;
                        *restart_backoff = None;
                    }
                    HomeserverAnswer::NotFound => {
                        self.state = State::Finished(Outcome::EventGone);
                    }
                    HomeserverAnswer::RetryLater(after) => {
                        let backoff = restart_backoff.get_or_insert_with(Backoff::new);
                        let wait = backoff.next(&mut self.rng).max(after.unwrap_or_default());
                        if now + wait >= self.deadline {
                            self.state = State::Finished(Outcome::RestartsFailed);
                        } else {
                            *next_restart = now + wait;
                        }
                    }
                }
            }
            (State::Sending { reason, next_try, backoff, until }, Action::Send, answer) => {
                match answer {
                    HomeserverAnswer::Done => self.state = State::Finished(Outcome::Sent(*reason)),
                    HomeserverAnswer::NotFound => {
                        self.state = State::Finished(Outcome::AlreadyGone(*reason));
                    }
                    HomeserverAnswer::RetryLater(after) => {
                        let wait = backoff.next(&mut self.rng).max(after.unwrap_or_default());
                        if now + wait >= *until {
                            self.state = State::Finished(Outcome::SendFailed(*reason));
                        } else {
                            *next_try = now + wait;
                        }
                    }
                }
            }
            _ => {}
        }
        self.schedule(now);
    }

    fn connect(&mut self, now: Instant, sid: String) {
        self.state = State::Connected {
            sid,
            next_restart: now,
            restart_backoff: None,
            next_check: self.sanity_check.map(|i| now + i),
            confirming: false,
        };
    }

    fn start_sending(&mut self, now: Instant, reason: SendReason) {
        let window = self.deadline.saturating_duration_since(now);
        let window = window.clamp(Duration::from_secs(1), Duration::from_secs(3600));
        self.state =
            State::Sending { reason, until: now + window, next_try: now, backoff: Backoff::new() };
    }

    /// Makes the action that is due at `now` pending, when nothing is in flight.
    fn schedule(&mut self, now: Instant) {
        if self.in_flight.is_some() || self.pending.is_some() {
            return;
        }
        self.pending = match &self.state {
            State::Waiting { next_lookup, .. } if now >= *next_lookup => Some(Action::LookUp),
            State::Connected { confirming: true, .. } => Some(Action::LookUp),
            State::Connected { next_restart, .. } if now >= *next_restart => Some(Action::Restart),
            State::Connected { next_check: Some(at), .. } if now >= *at => Some(Action::LookUp),
            State::Sending { next_try, .. } if now >= *next_try => Some(Action::Send),
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(10);

    fn present(sid: &str) -> Lookup {
        Lookup::Present { sid: sid.into() }
    }

    /// A job that found its participant connected and restarted once.
    fn connected(now: Instant, sanity: Option<Duration>) -> Job {
        let mut job = Job::new(now, DELAY, sanity, 7);
        assert_eq!(job.poll_action(), Some(Action::LookUp));
        job.handle_lookup(now, present("PA_1"));
        assert_eq!(job.poll_action(), Some(Action::Restart));
        job.handle_homeserver(now, HomeserverAnswer::Done);
        assert!(job.is_connected());
        job
    }

    #[test]
    fn restarts_every_eighty_percent_of_the_delay_while_connected() {
        let t0 = Instant::now();
        let mut job = connected(t0, None);
        assert_eq!(job.poll_action(), None);
        assert_eq!(job.poll_timeout(), Some(t0 + Duration::from_secs(8)));
        for round in 1..=5u32 {
            let now = t0 + Duration::from_secs(8) * round;
            job.handle_timeout(now);
            assert_eq!(job.poll_action(), Some(Action::Restart), "round {round}");
            job.handle_homeserver(now, HomeserverAnswer::Done);
            assert_eq!(job.poll_timeout(), Some(now + Duration::from_secs(8)));
        }
        assert_eq!(job.outcome(), None);
    }

    #[test]
    fn sends_when_the_connected_participant_leaves() {
        let t0 = Instant::now();
        let mut job = connected(t0, None);
        let t1 = t0 + Duration::from_secs(3);
        job.handle_sfu_event(t1, SfuEvent::Left { sid: "PA_1".into() });
        assert_eq!(job.poll_action(), Some(Action::LookUp), "the departure is confirmed");
        job.handle_lookup(t1, Lookup::Absent);
        assert_eq!(job.poll_action(), Some(Action::Send));
        job.handle_homeserver(t1, HomeserverAnswer::Done);
        assert_eq!(job.outcome(), Some(Outcome::Sent(SendReason::Left)));
        assert_eq!(job.poll_timeout(), None);
    }

    #[test]
    fn a_reconnect_of_the_same_identity_is_followed_not_sent() {
        let t0 = Instant::now();
        let mut job = connected(t0, None);
        // A departure of an older session is ignored outright.
        job.handle_sfu_event(t0, SfuEvent::Left { sid: "PA_0".into() });
        assert_eq!(job.poll_action(), None);
        // The current session is replaced (duplicate identity): the lookup finds the new one.
        job.handle_sfu_event(t0, SfuEvent::Left { sid: "PA_1".into() });
        assert_eq!(job.poll_action(), Some(Action::LookUp));
        job.handle_lookup(t0, present("PA_2"));
        assert_eq!(job.poll_action(), None);
        assert!(job.is_connected());
        // The new session's own departure counts.
        job.handle_sfu_event(t0, SfuEvent::Left { sid: "PA_1".into() });
        assert_eq!(job.poll_action(), None);
        job.handle_sfu_event(t0, SfuEvent::Left { sid: "PA_2".into() });
        assert_eq!(job.poll_action(), Some(Action::LookUp));
        // An SFU that cannot be asked does not contradict the webhook.
        job.handle_lookup(t0, Lookup::Failed);
        assert_eq!(job.poll_action(), Some(Action::Send));
    }

    #[test]
    fn waits_with_backoff_and_sends_if_the_participant_never_connects() {
        let t0 = Instant::now();
        let mut job = Job::new(t0, DELAY, None, 3);
        let mut now = t0;
        let mut lookups = 0;
        loop {
            match job.poll_action() {
                Some(Action::LookUp) => {
                    lookups += 1;
                    job.handle_lookup(now, Lookup::Absent);
                }
                Some(Action::Send) => break,
                other => panic!("unexpected {other:?}"),
            }
            // Departures seen while waiting change nothing.
            job.handle_sfu_event(now, SfuEvent::Left { sid: String::new() });
            now = job.poll_timeout().unwrap();
            job.handle_timeout(now);
        }
        assert_eq!(now, t0 + DELAY, "sent when the wait (min(1 h, delay)) ran out");
        assert!((4..=12).contains(&lookups), "{lookups} lookups in 10 s with backoff");
        job.handle_homeserver(now, HomeserverAnswer::NotFound);
        assert_eq!(job.outcome(), Some(Outcome::AlreadyGone(SendReason::NeverConnected)));
    }

    #[test]
    fn a_join_webhook_connects_a_waiting_job() {
        let t0 = Instant::now();
        let mut job = Job::new(t0, DELAY, None, 3);
        assert_eq!(job.poll_action(), Some(Action::LookUp));
        job.handle_lookup(t0, Lookup::Failed);
        job.handle_sfu_event(t0, SfuEvent::Joined { sid: "PA_9".into() });
        assert_eq!(job.poll_action(), Some(Action::Restart));
    }

    #[test]
    fn a_restart_answered_not_found_ends_without_sending() {
        let t0 = Instant::now();
        let mut job = connected(t0, None);
        let t1 = t0 + Duration::from_secs(8);
        job.handle_timeout(t1);
        assert_eq!(job.poll_action(), Some(Action::Restart));
        job.handle_homeserver(t1, HomeserverAnswer::NotFound);
        assert_eq!(job.outcome(), Some(Outcome::EventGone));
        assert_eq!(job.poll_action(), None);
    }

    #[test]
    fn failing_restarts_retry_until_the_delay_runs_out_honouring_retry_after() {
        let t0 = Instant::now();
        let mut job = connected(t0, None);
        let mut now = t0 + Duration::from_secs(8);
        job.handle_timeout(now);
        assert_eq!(job.poll_action(), Some(Action::Restart));
        job.handle_homeserver(now, HomeserverAnswer::RetryLater(Some(Duration::from_secs(1))));
        let next = job.poll_timeout().unwrap();
        assert!(next >= now + Duration::from_secs(1) && next < now + Duration::from_secs(2));
        let mut attempts = 1;
        while job.outcome().is_none() {
            now = job.poll_timeout().unwrap();
            job.handle_timeout(now);
            if job.poll_action() == Some(Action::Restart) {
                attempts += 1;
                job.handle_homeserver(now, HomeserverAnswer::RetryLater(None));
            }
        }
        assert_eq!(job.outcome(), Some(Outcome::RestartsFailed));
        assert!(now <= t0 + DELAY, "gave up by the homeserver's own deadline");
        assert!(attempts >= 2, "{attempts}");

        // A success in between puts the deadline back.
        let mut job = connected(t0, None);
        let t1 = t0 + Duration::from_secs(8);
        job.handle_timeout(t1);
        job.poll_action();
        job.handle_homeserver(t1, HomeserverAnswer::RetryLater(None));
        let t2 = job.poll_timeout().unwrap();
        job.handle_timeout(t2);
        assert_eq!(job.poll_action(), Some(Action::Restart));
        job.handle_homeserver(t2, HomeserverAnswer::Done);
        assert_eq!(job.poll_timeout(), Some(t2 + Duration::from_secs(8)));
    }

    #[test]
    fn the_sanity_check_sends_for_a_participant_gone_without_a_webhook() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(3);
        let mut job = connected(t0, Some(interval));
        assert_eq!(job.poll_timeout(), Some(t0 + interval));
        let t1 = t0 + interval;
        job.handle_timeout(t1);
        assert_eq!(job.poll_action(), Some(Action::LookUp));
        // An SFU that cannot be asked is no news.
        job.handle_lookup(t1, Lookup::Failed);
        assert!(job.is_connected());
        let t2 = job.poll_timeout().unwrap();
        assert_eq!(t2, t1 + interval);
        job.handle_timeout(t2);
        assert_eq!(job.poll_action(), Some(Action::LookUp));
        job.handle_lookup(t2, Lookup::Absent);
        assert_eq!(job.poll_action(), Some(Action::Send));
        job.handle_homeserver(t2, HomeserverAnswer::Done);
        assert_eq!(job.outcome(), Some(Outcome::Sent(SendReason::Gone)));
    }

    #[test]
    fn a_failing_send_retries_for_at_least_a_second_then_gives_up() {
        let t0 = Instant::now();
        let mut job = connected(t0, None);
        // Leave just before the homeserver's own deadline: the window is at least 1 s.
        let t1 = t0 + DELAY - Duration::from_millis(100);
        job.handle_sfu_event(t1, SfuEvent::Left { sid: String::new() });
        job.poll_action();
        job.handle_lookup(t1, Lookup::Absent);
        assert_eq!(job.poll_action(), Some(Action::Send));
        job.handle_homeserver(t1, HomeserverAnswer::RetryLater(None));
        while job.outcome().is_none() {
            let now = job.poll_timeout().unwrap();
            job.handle_timeout(now);
            if job.poll_action() == Some(Action::Send) {
                job.handle_homeserver(now, HomeserverAnswer::RetryLater(None));
            }
        }
        assert_eq!(job.outcome(), Some(Outcome::SendFailed(SendReason::Left)));
    }

    #[test]
    fn tiny_and_huge_delays_neither_spin_nor_overflow() {
        let t0 = Instant::now();
        let mut job = Job::new(t0, Duration::from_millis(1), None, 1);
        job.poll_action();
        job.handle_lookup(t0, present("PA"));
        job.poll_action();
        job.handle_homeserver(t0, HomeserverAnswer::Done);
        assert_eq!(job.poll_timeout(), Some(t0 + MIN_RESTART_INTERVAL));

        let mut job = Job::new(t0, Duration::from_secs(u64::MAX / 4), None, 1);
        assert_eq!(job.poll_action(), Some(Action::LookUp));
        job.handle_lookup(t0, Lookup::Absent);
        assert!(job.poll_timeout().unwrap() <= t0 + MAX_WAIT);
    }

    #[test]
    fn answers_nobody_asked_for_are_ignored() {
        let t0 = Instant::now();
        let mut job = Job::new(t0, DELAY, None, 1);
        job.handle_homeserver(t0, HomeserverAnswer::Done);
        job.handle_lookup(t0, present("PA"));
        assert!(!job.is_connected(), "no lookup was in flight");
        assert_eq!(job.poll_action(), Some(Action::LookUp));
    }
}
