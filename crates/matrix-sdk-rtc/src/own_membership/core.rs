//! The sans-IO core of our own membership: a state machine that takes time and the outcomes of
//! requests, and says which request to make next and when to wake up.
//!
//! The cadence follows matrix-js-sdk's `MembershipManager` (with a 10 s delayed leave restarted
//! every 5 s, each restart bounded by a 2 s timeout): the server sends our leave by itself 10 s
//! after the last successful restart, so a crashed or killed process leaves no ghost.
//!
//! One request is in flight at a time. The shell runs [`OwnMembershipCore::poll_command`], executes
//! the command within its timeout, feeds the [`Outcome`] back with
//! [`OwnMembershipCore::handle_outcome`], and sleeps until [`OwnMembershipCore::poll_timeout`].

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::membership::{
    DEFAULT_EXPIRES_MS, MAX_STICKY_DURATION_MS, SessionMembershipContent, StickyMembershipContent,
};

/// Sticky memberships are re-sent this long after the last send (stickiness lasts 1 h).
const STICKY_REFRESH: Duration = Duration::from_millis(MAX_STICKY_DURATION_MS - 5 * 60 * 1000);

/// Timing of the membership lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MembershipTimings {
    /// Delay of the delayed leave event (MSC4140). Default 10 s.
    pub delayed_leave_delay: Duration,
    /// How often the delayed leave is restarted. Default 5 s.
    pub restart_interval: Duration,
    /// Local timeout of every request. Default 2 s.
    pub request_timeout: Duration,
    /// Wait before retrying after a network or server error. Default 1 s.
    pub retry_interval: Duration,
    /// `expires` of the membership. Default 4 h.
    pub expires: Duration,
    /// How often the membership is re-sent with a longer `expires`. Default 1 h.
    pub refresh_interval: Duration,
    /// `expires` used when the homeserver has no delayed events: a crash leaves a ghost for at
    /// most this long. Default 2 min, refreshed every half of it.
    pub fallback_expires: Duration,
}

impl Default for MembershipTimings {
    fn default() -> Self {
        Self {
            delayed_leave_delay: Duration::from_secs(10),
            restart_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(2),
            retry_interval: Duration::from_secs(1),
            expires: Duration::from_millis(DEFAULT_EXPIRES_MS),
            refresh_interval: Duration::from_secs(3600),
            fallback_expires: Duration::from_secs(120),
        }
    }
}

/// A request for the shell to make.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    /// Schedule the delayed leave (`{}` in our slot after `delay`); answer [`Outcome::DelayId`].
    ScheduleDelayedLeave {
        /// The delay.
        delay: Duration,
    },
    /// Send our membership with this content.
    SendMembership {
        /// The content.
        content: Value,
    },
    /// Restart the delayed leave's timer.
    RestartDelayedLeave {
        /// Its id.
        delay_id: String,
    },
    /// Send the delayed leave now.
    SendDelayedLeaveNow {
        /// Its id.
        delay_id: String,
    },
    /// Send the leave (`{}`) directly.
    SendLeave,
}

/// A request with its id and the time it may take.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Echoed in [`OwnMembershipCore::handle_outcome`].
    pub id: u64,
    /// What to do.
    pub request: Request,
    /// Give up after this long and report [`Outcome::TimedOut`].
    pub timeout: Duration,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Done.
    Ok,
    /// The delayed leave was scheduled with this id.
    DelayId(String),
    /// The server does not know the delayed event (404): it fired, was cancelled, or the server
    /// lost it.
    NotFound,
    /// The server does not support delayed events.
    Unsupported,
    /// A network or server error.
    Failed(String),
    /// No answer within the command's timeout.
    TimedOut,
}

/// Where our membership stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembershipStatus {
    /// Not joined.
    Idle,
    /// Joining: the membership has not been sent yet.
    Joining,
    /// Joined, with a working dead-man's switch (or the fallback expiry).
    Joined,
    /// Joined, but restarts have failed for longer than the delay: the server has probably sent
    /// our leave already. Cleared when a request succeeds again.
    ProbablyLeft,
    /// Leaving.
    Leaving,
    /// Left.
    Left,
}

/// The membership dialect we send. Never both at once: a device that publishes both appears
/// twice to Element Call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SendDialect {
    /// Per-device state event, as Element Call sends by default (the default).
    #[default]
    Session,
    /// Sticky `org.matrix.msc4143.rtc.member` event (opt-in, Element Call's "matrix_2_0" mode):
    /// needs a homeserver with MSC4354; invisible to Element X-hosted Element Call.
    Sticky {
        /// The member id and sticky key (a fresh UUID per join).
        member_id: String,
    },
}

/// Who we are in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIdentity {
    /// Our user id.
    pub user_id: String,
    /// Our device id.
    pub device_id: String,
    /// The room id.
    pub room_id: String,
    /// The authorization service we publish through.
    pub service_url: String,
    /// The dialect we send.
    pub dialect: SendDialect,
}

/// The membership lifecycle state machine.
#[derive(Debug)]
pub struct OwnMembershipCore {
    me: MemberIdentity,
    timings: MembershipTimings,
    delayed_events: bool,
    status: MembershipStatus,
    want_joined: bool,
    next_id: u64,
    in_flight: Option<(u64, Request)>,
    delay_id: Option<String>,
    membership_sent: bool,
    /// Unix ms of our first join (the `created_ts` of updates).
    first_join_ms: Option<u64>,
    send_membership_at: Option<Instant>,
    arm_at: Option<Instant>,
    restart_at: Option<Instant>,
    refresh_at: Option<Instant>,
    last_confirmed: Option<Instant>,
    leave_step: LeaveStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaveStep {
    None,
    SendDelayed,
    SendDirect,
}

impl OwnMembershipCore {
    /// A core for `me`. `delayed_events` says whether the homeserver supports MSC4140.
    pub fn new(me: MemberIdentity, timings: MembershipTimings, delayed_events: bool) -> Self {
        Self {
            me,
            timings,
            delayed_events,
            status: MembershipStatus::Idle,
            want_joined: false,
            next_id: 0,
            in_flight: None,
            delay_id: None,
            membership_sent: false,
            first_join_ms: None,
            send_membership_at: None,
            arm_at: None,
            restart_at: None,
            refresh_at: None,
            last_confirmed: None,
            leave_step: LeaveStep::None,
        }
    }

    /// The current status.
    pub fn status(&self) -> MembershipStatus {
        self.status
    }

    /// Whether delayed events are in use (false after the server turned out not to have them).
    pub fn uses_delayed_events(&self) -> bool {
        self.delayed_events
    }

    /// The leave content of our dialect (`{}` for state events, only the sticky key for sticky
    /// events).
    pub fn leave_content(&self) -> Value {
        match &self.me.dialect {
            SendDialect::Session => Value::Object(serde_json::Map::new()),
            SendDialect::Sticky { member_id } => {
                serde_json::json!({"msc4354_sticky_key": member_id})
            }
        }
    }

    /// The dialect we send.
    pub fn dialect(&self) -> &SendDialect {
        &self.me.dialect
    }

    /// The current delayed leave, if one is scheduled.
    pub fn delay_id(&self) -> Option<&str> {
        self.delay_id.as_deref()
    }

    /// Starts joining.
    pub fn join(&mut self, now: Instant) {
        if self.want_joined {
            return;
        }
        self.want_joined = true;
        self.status = MembershipStatus::Joining;
        self.leave_step = LeaveStep::None;
        if self.delayed_events {
            self.arm_at = Some(now);
        } else {
            self.send_membership_at = Some(now);
        }
    }

    /// Starts leaving.
    pub fn leave(&mut self, _now: Instant) {
        if !self.want_joined
            && matches!(self.status, MembershipStatus::Leaving | MembershipStatus::Left)
        {
            return;
        }
        self.want_joined = false;
        self.status = MembershipStatus::Leaving;
        self.send_membership_at = None;
        self.arm_at = None;
        self.restart_at = None;
        self.refresh_at = None;
        self.leave_step =
            if self.delay_id.is_some() { LeaveStep::SendDelayed } else { LeaveStep::SendDirect };
    }

    /// Our membership is no longer in the room state while we are joined (another client cleared
    /// it, or the server sent our delayed leave): send it again.
    pub fn membership_vanished(&mut self, now: Instant) {
        // Also while a request is in flight: the re-send waits for it.
        if self.want_joined && self.membership_sent {
            tracing::info!("own membership vanished from the room; sending it again");
            if self.delayed_events && self.delay_id.is_none() {
                self.arm_at = Some(now);
            } else {
                self.send_membership_at = Some(now);
            }
        }
    }

    /// The next request to make, if one is due and none is in flight. `now_unix_ms` is the wall
    /// clock, used for the `expires` of membership contents.
    pub fn poll_command(&mut self, now: Instant, now_unix_ms: u64) -> Option<Command> {
        if self.in_flight.is_some() {
            return None;
        }
        let request = if !self.want_joined {
            match self.leave_step {
                LeaveStep::SendDelayed => match self.delay_id.clone() {
                    Some(delay_id) => Request::SendDelayedLeaveNow { delay_id },
                    None => Request::SendLeave,
                },
                LeaveStep::SendDirect => Request::SendLeave,
                LeaveStep::None => return None,
            }
        } else if due(self.arm_at, now) {
            Request::ScheduleDelayedLeave { delay: self.timings.delayed_leave_delay }
        } else if due(self.send_membership_at, now) || due(self.refresh_at, now) {
            Request::SendMembership { content: self.membership_content(now_unix_ms) }
        } else if due(self.restart_at, now) {
            Request::RestartDelayedLeave { delay_id: self.delay_id.clone()? }
        } else {
            return None;
        };
        self.next_id += 1;
        let timeout = match &request {
            // Never wait past the moment the server would send our leave.
            Request::RestartDelayedLeave { .. } => {
                let left = self
                    .last_confirmed
                    .map(|t| (t + self.timings.delayed_leave_delay).saturating_duration_since(now))
                    .unwrap_or(self.timings.request_timeout);
                self.timings.request_timeout.min(left.max(Duration::from_millis(100)))
            }
            _ => self.timings.request_timeout,
        };
        self.in_flight = Some((self.next_id, request.clone()));
        Some(Command { id: self.next_id, request, timeout })
    }

    /// When to call [`Self::poll_command`] next, if nothing else happens.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() || !self.want_joined {
            return None;
        }
        [self.arm_at, self.send_membership_at, self.refresh_at, self.restart_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Feeds back how command `id` ended. `now_unix_ms` is the wall clock (for `created_ts`).
    pub fn handle_outcome(&mut self, id: u64, outcome: Outcome, now: Instant, now_unix_ms: u64) {
        let Some((expected, request)) = self.in_flight.take() else {
            return;
        };
        if expected != id {
            self.in_flight = Some((expected, request));
            return;
        }
        let retry = |now: Instant, outcome: &Outcome| match outcome {
            Outcome::TimedOut => now,
            _ => now + self.timings.retry_interval,
        };
        match request {
            Request::ScheduleDelayedLeave { .. } => match outcome {
                Outcome::DelayId(delay_id) => {
                    self.delay_id = Some(delay_id);
                    self.arm_at = None;
                    self.last_confirmed = Some(now);
                    // Join, or re-join after the server lost or sent our delayed leave.
                    self.send_membership_at = Some(now);
                    if !self.want_joined {
                        self.leave_step = LeaveStep::SendDelayed;
                    }
                }
                Outcome::Unsupported => {
                    tracing::warn!(
                        "the homeserver does not support delayed events (MSC4140): joining with a {:?} expiry instead; \
                         a crash leaves a ghost membership for up to that long",
                        self.timings.fallback_expires
                    );
                    self.delayed_events = false;
                    self.arm_at = None;
                    self.send_membership_at = Some(now);
                }
                ref failure => {
                    tracing::warn!(?failure, "scheduling the delayed leave failed; retrying");
                    self.arm_at = Some(retry(now, failure));
                }
            },
            Request::SendMembership { .. } => match outcome {
                Outcome::Ok => {
                    self.membership_sent = true;
                    self.first_join_ms.get_or_insert(now_unix_ms);
                    self.send_membership_at = None;
                    self.status = MembershipStatus::Joined;
                    let refresh = match (&self.me.dialect, self.delayed_events) {
                        // Stickiness lasts at most 1 h: re-send before it ends.
                        (SendDialect::Sticky { .. }, _) => {
                            self.timings.refresh_interval.min(STICKY_REFRESH)
                        }
                        (SendDialect::Session, true) => self.timings.refresh_interval,
                        (SendDialect::Session, false) => self.timings.fallback_expires / 2,
                    };
                    self.refresh_at = Some(now + refresh);
                    if self.delay_id.is_some() {
                        // Restart at once: finds servers that cancel our own delayed event on a
                        // state update (Synapse before 1.127).
                        self.restart_at = Some(now);
                    }
                }
                ref failure => {
                    tracing::warn!(?failure, "sending the membership failed; retrying");
                    let at = retry(now, failure);
                    if self.send_membership_at.is_none() {
                        self.refresh_at = Some(at);
                    } else {
                        self.send_membership_at = Some(at);
                    }
                }
            },
            Request::RestartDelayedLeave { .. } => match outcome {
                Outcome::Ok => {
                    self.last_confirmed = Some(now);
                    self.restart_at = Some(now + self.timings.restart_interval);
                    if self.status == MembershipStatus::ProbablyLeft {
                        self.status = MembershipStatus::Joined;
                    }
                }
                Outcome::NotFound => {
                    tracing::info!(
                        "the delayed leave is gone (404); scheduling a new one and re-joining"
                    );
                    self.delay_id = None;
                    self.restart_at = None;
                    self.arm_at = Some(now);
                }
                ref failure => {
                    self.restart_at = Some(retry(now, failure));
                    let deadline =
                        self.last_confirmed.map(|t| t + self.timings.delayed_leave_delay);
                    if deadline.is_some_and(|d| now >= d) && self.status == MembershipStatus::Joined
                    {
                        tracing::warn!(
                            ?failure,
                            "restarting the delayed leave keeps failing; the server has probably sent our leave"
                        );
                        self.status = MembershipStatus::ProbablyLeft;
                    }
                }
            },
            Request::SendDelayedLeaveNow { .. } => match outcome {
                Outcome::Ok => self.finish_leave(),
                _ => self.leave_step = LeaveStep::SendDirect,
            },
            Request::SendLeave => {
                if let Outcome::Failed(error) = &outcome {
                    tracing::warn!(%error, "sending the leave failed; the membership stays until it expires");
                } else if outcome == Outcome::TimedOut {
                    tracing::warn!("sending the leave timed out");
                }
                self.finish_leave();
            }
        }
    }

    fn finish_leave(&mut self) {
        self.delay_id = None;
        self.membership_sent = false;
        self.leave_step = LeaveStep::None;
        self.status = MembershipStatus::Left;
    }

    /// The content to send now: the first join has `expires` alone; updates keep `created_ts`
    /// of the first join and grow `expires` so that the content always changes (servers drop
    /// identical state) and stays valid for `expires` from now.
    fn membership_content(&self, now_unix_ms: u64) -> Value {
        if let SendDialect::Sticky { member_id } = &self.me.dialect {
            return StickyMembershipContent::new(
                &self.me.user_id,
                &self.me.device_id,
                member_id,
                &self.me.service_url,
            )
            .to_json();
        }
        let lifetime =
            if self.delayed_events { self.timings.expires } else { self.timings.fallback_expires };
        let lifetime = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        let mut content = SessionMembershipContent::new(
            &self.me.user_id,
            &self.me.device_id,
            &self.me.room_id,
            &self.me.service_url,
        );
        match self.first_join_ms {
            Some(first) => {
                content.created_ts = Some(first);
                content.expires = now_unix_ms.saturating_sub(first).saturating_add(lifetime);
            }
            None => content.expires = lifetime,
        }
        content.to_json()
    }
}

fn due(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|t| now >= t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0_MS: u64 = 1_800_000_000_000;

    fn me() -> MemberIdentity {
        MemberIdentity {
            user_id: "@bot:x".into(),
            device_id: "BOT".into(),
            room_id: "!r:x".into(),
            service_url: "https://rtc.x".into(),
            dialect: SendDialect::Session,
        }
    }

    /// A fake clock and a driver that answers requests the way `answer` says.
    struct Harness {
        core: OwnMembershipCore,
        t0: Instant,
        now: Instant,
        log: Vec<(Duration, Request)>,
    }

    impl Harness {
        fn new(delayed: bool) -> Self {
            let t0 = Instant::now();
            Self {
                core: OwnMembershipCore::new(me(), MembershipTimings::default(), delayed),
                t0,
                now: t0,
                log: Vec::new(),
            }
        }

        fn unix_ms(&self) -> u64 {
            T0_MS + u64::try_from((self.now - self.t0).as_millis()).unwrap()
        }

        /// Runs every due command, answering with `answer`; then jumps to the next timer, until
        /// `until` (elapsed since start).
        fn run(&mut self, until: Duration, mut answer: impl FnMut(&Request, Duration) -> Outcome) {
            loop {
                while let Some(command) = self.core.poll_command(self.now, self.unix_ms()) {
                    let elapsed = self.now - self.t0;
                    if elapsed > until {
                        // Not run: hand it back unanswered by forgetting it (a new poll re-issues it).
                        self.core.in_flight = None;
                        return;
                    }
                    self.log.push((elapsed, command.request.clone()));
                    let outcome = answer(&command.request, elapsed);
                    if outcome == Outcome::TimedOut {
                        self.now += command.timeout;
                    }
                    let unix = self.unix_ms();
                    self.core.handle_outcome(command.id, outcome, self.now, unix);
                }
                match self.core.poll_timeout() {
                    Some(at) if at - self.t0 <= until => self.now = at.max(self.now),
                    _ => {
                        self.now = self.t0 + until;
                        return;
                    }
                }
            }
        }

        fn count(&self, f: impl Fn(&Request) -> bool) -> usize {
            self.log.iter().filter(|(_, r)| f(r)).count()
        }
    }

    fn ok(request: &Request, _: Duration) -> Outcome {
        match request {
            Request::ScheduleDelayedLeave { .. } => Outcome::DelayId("syd_1".into()),
            _ => Outcome::Ok,
        }
    }

    fn contents(h: &Harness) -> Vec<Value> {
        h.log
            .iter()
            .filter_map(|(_, r)| match r {
                Request::SendMembership { content } => Some(content.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn joins_with_a_delayed_leave_first() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        h.run(Duration::ZERO, ok);
        assert_eq!(h.log[0].1, Request::ScheduleDelayedLeave { delay: Duration::from_secs(10) });
        let Request::SendMembership { content } = &h.log[1].1 else { panic!("{:?}", h.log) };
        assert_eq!(content["expires"], 14_400_000);
        assert!(content.get("created_ts").is_none(), "a first join has no created_ts");
        assert_eq!(content["focus_active"]["focus_selection"], "multi_sfu");
        assert_eq!(
            h.log[2].1,
            Request::RestartDelayedLeave { delay_id: "syd_1".into() },
            "restart at once"
        );
        assert_eq!(h.core.status(), MembershipStatus::Joined);
    }

    /// Four hours of a call in microseconds: a restart every 5 s, a refresh every hour whose
    /// content keeps created_ts and always stays valid for 4 h.
    #[test]
    fn four_hours_on_injected_time() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        let started = std::time::Instant::now();
        h.run(Duration::from_secs(4 * 3600), ok);
        assert!(started.elapsed() < Duration::from_secs(5), "fake time, not real time");

        let restarts: Vec<Duration> = h
            .log
            .iter()
            .filter(|(_, r)| matches!(r, Request::RestartDelayedLeave { .. }))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(restarts.len(), 1 + 4 * 3600 / 5);
        assert!(
            restarts.windows(2).all(|w| w[1] - w[0] <= Duration::from_secs(5)),
            "never more than 5 s apart"
        );

        let contents = contents(&h);
        assert_eq!(contents.len(), 1 + 4, "the join and one refresh per hour");
        for (n, content) in contents.iter().enumerate().skip(1) {
            assert_eq!(content["created_ts"], T0_MS, "created_ts is the first join");
            assert_eq!(
                content["expires"],
                14_400_000 + n as u64 * 3_600_000,
                "valid 4 h from the refresh"
            );
        }
        assert_eq!(h.core.status(), MembershipStatus::Joined);
    }

    #[test]
    fn restart_404_rearms_and_rejoins() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        let mut armed = 0;
        h.run(Duration::from_secs(60), |request, elapsed| match request {
            Request::ScheduleDelayedLeave { .. } => {
                armed += 1;
                Outcome::DelayId(format!("syd_{armed}"))
            }
            Request::RestartDelayedLeave { delay_id }
                if delay_id == "syd_1" && elapsed >= Duration::from_secs(20) =>
            {
                Outcome::NotFound
            }
            _ => Outcome::Ok,
        });
        assert_eq!(h.core.delay_id(), Some("syd_2"));
        assert_eq!(
            h.count(|r| matches!(r, Request::SendMembership { .. })),
            2,
            "re-sent after the re-arm"
        );
        let last = h.log.last().unwrap();
        assert_eq!(last.1, Request::RestartDelayedLeave { delay_id: "syd_2".into() });
        assert_eq!(h.core.status(), MembershipStatus::Joined);
    }

    #[test]
    fn failing_restarts_mean_probably_left_until_one_succeeds() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        h.run(Duration::from_secs(10), ok);
        let outage = Duration::from_secs(10)..Duration::from_secs(30);
        h.run(Duration::from_secs(26), |r, t| {
            if outage.contains(&t) { Outcome::TimedOut } else { ok(r, t) }
        });
        assert_eq!(h.core.status(), MembershipStatus::ProbablyLeft);
        // Every restart during the outage waited at most 2 s.
        h.run(Duration::from_secs(40), |r, t| {
            if outage.contains(&t) { Outcome::TimedOut } else { ok(r, t) }
        });
        assert_eq!(h.core.status(), MembershipStatus::Joined);
    }

    #[test]
    fn restart_timeout_never_outlasts_the_servers_deadline() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        h.run(Duration::ZERO, ok);
        // 9.5 s after the last confirmation only 0.5 s remain.
        h.now += Duration::from_millis(9_500);
        h.core.restart_at = Some(h.now);
        let command = h.core.poll_command(h.now, 0).unwrap();
        assert!(matches!(command.request, Request::RestartDelayedLeave { .. }));
        assert_eq!(command.timeout, Duration::from_millis(500));
    }

    #[test]
    fn leave_sends_the_delayed_leave_and_falls_back_to_a_direct_leave() {
        for (answer, expected) in [
            (Outcome::Ok, vec!["now"]),
            (Outcome::NotFound, vec!["now", "direct"]),
            (Outcome::TimedOut, vec!["now", "direct"]),
        ] {
            let mut h = Harness::new(true);
            h.core.join(h.now);
            h.run(Duration::from_secs(7), ok);
            h.log.clear();
            h.core.leave(h.now);
            let answer = answer.clone();
            h.run(Duration::from_secs(20), move |r, _| match r {
                Request::SendDelayedLeaveNow { .. } => answer.clone(),
                _ => Outcome::Ok,
            });
            let steps: Vec<&str> = h
                .log
                .iter()
                .map(|(_, r)| match r {
                    Request::SendDelayedLeaveNow { .. } => "now",
                    Request::SendLeave => "direct",
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert_eq!(steps, expected);
            assert_eq!(h.core.status(), MembershipStatus::Left);
            assert_eq!(h.core.poll_timeout(), None, "nothing left to do");
        }
    }

    #[test]
    fn without_delayed_events_a_short_expiry_is_refreshed() {
        let mut h = Harness::new(false);
        h.core.join(h.now);
        h.run(Duration::from_secs(300), ok);
        assert_eq!(
            h.count(|r| matches!(
                r,
                Request::ScheduleDelayedLeave { .. } | Request::RestartDelayedLeave { .. }
            )),
            0
        );
        let contents = contents(&h);
        assert_eq!(contents[0]["expires"], 120_000);
        assert_eq!(contents.len(), 1 + 5, "refreshed every minute");
        assert_eq!(contents[5]["expires"], 300_000 + 120_000);
    }

    #[test]
    fn a_server_that_turns_out_not_to_support_delayed_events() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        h.run(Duration::from_secs(1), |r, t| match r {
            Request::ScheduleDelayedLeave { .. } => Outcome::Unsupported,
            _ => ok(r, t),
        });
        assert!(!h.core.uses_delayed_events());
        assert_eq!(contents(&h)[0]["expires"], 120_000);
        assert_eq!(h.core.status(), MembershipStatus::Joined);
    }

    #[test]
    fn a_vanished_membership_is_sent_again() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        h.run(Duration::from_secs(3), ok);
        h.core.membership_vanished(h.now);
        h.run(Duration::from_secs(3), ok);
        assert_eq!(h.count(|r| matches!(r, Request::SendMembership { .. })), 2);
        assert!(contents(&h)[1].get("created_ts").is_some());
    }

    #[test]
    fn sticky_memberships_are_re_sent_before_their_stickiness_ends() {
        let mut h = Harness::new(true);
        h.core.me.dialect = SendDialect::Sticky { member_id: "uuid-1".into() };
        h.core.join(h.now);
        h.run(Duration::from_secs(3 * 3600), ok);
        let sends: Vec<Duration> = h
            .log
            .iter()
            .filter(|(_, r)| matches!(r, Request::SendMembership { .. }))
            .map(|(t, _)| *t)
            .collect();
        assert!(sends.windows(2).all(|w| w[1] - w[0] < Duration::from_secs(3600)), "{sends:?}");
        assert_eq!(sends.len(), 1 + 3 * 60 / 55);
        let content = &contents(&h)[0];
        assert_eq!(content["msc4354_sticky_key"], "uuid-1");
        assert_eq!(content["member"]["id"], "uuid-1");
        assert!(content.get("expires").is_none());
        assert_eq!(h.core.leave_content(), serde_json::json!({"msc4354_sticky_key": "uuid-1"}));
    }

    #[test]
    fn a_vanish_seen_during_a_request_is_not_lost() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        h.run(Duration::from_secs(3), ok);
        let restart = h.core.poll_command(h.now + Duration::from_secs(5), T0_MS).unwrap();
        assert!(matches!(restart.request, Request::RestartDelayedLeave { .. }));
        h.core.membership_vanished(h.now + Duration::from_secs(5));
        h.core.handle_outcome(restart.id, Outcome::Ok, h.now + Duration::from_secs(5), T0_MS);
        let next = h.core.poll_command(h.now + Duration::from_secs(5), T0_MS).unwrap();
        assert!(matches!(next.request, Request::SendMembership { .. }), "{next:?}");
    }

    #[test]
    fn outcomes_of_unknown_commands_are_ignored() {
        let mut h = Harness::new(true);
        h.core.join(h.now);
        let command = h.core.poll_command(h.now, T0_MS).unwrap();
        h.core.handle_outcome(command.id + 7, Outcome::Ok, h.now, T0_MS);
        assert!(h.core.poll_command(h.now, T0_MS).is_none(), "still waiting for the real answer");
        h.core.handle_outcome(command.id, Outcome::DelayId("d".into()), h.now, T0_MS);
        assert!(matches!(
            h.core.poll_command(h.now, T0_MS).unwrap().request,
            Request::SendMembership { .. }
        ));
    }
}
