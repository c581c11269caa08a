//! The life of a delegated delayed leave driven by anything: any delay (clients choose it), any
//! order of SFU events, lookups, homeserver answers and time. Never a panic (no overflowing
//! instant), at most one action in flight, never an action while finished, and a job whose
//! homeserver always answers ends or keeps a timer.
//!
//! Layout: eight bytes of delay in ms (LE), one byte of sanity interval in s, then one byte per
//! step: `op % 8` picks the step, the next byte (where used) an amount.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use matrixrtc_auth::delegation::job::{Action, HomeserverAnswer, Job, Lookup, SfuEvent};

const MAX_STEPS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let delay_ms = u64::from_le_bytes(std::array::from_fn(|_| next()));
    let sanity = Duration::from_secs(u64::from(next()));
    let start = Instant::now();
    let mut now = start;
    let mut job = Job::new(now, Duration::from_millis(delay_ms), Some(sanity), 42);
    let mut in_flight: Option<Action> = None;
    let sid = |b: u8| if b & 1 == 0 { String::new() } else { format!("PA_{}", b >> 1 & 3) };
    for _ in 0..MAX_STEPS {
        let op = next();
        if in_flight.is_none() {
            in_flight = job.poll_action();
            if in_flight.is_some() {
                assert!(job.outcome().is_none(), "an action after the end");
                assert_eq!(job.poll_action(), None, "two actions in flight");
            }
        }
        match op % 8 {
            0 => job.handle_sfu_event(now, SfuEvent::Joined { sid: sid(next()) }),
            1 => job.handle_sfu_event(now, SfuEvent::Left { sid: sid(next()) }),
            2 => {
                let lookup = match next() % 3 {
                    0 => Lookup::Present { sid: sid(next()) },
                    1 => Lookup::Absent,
                    _ => Lookup::Failed,
                };
                if in_flight == Some(Action::LookUp) {
                    in_flight = None;
                }
                job.handle_lookup(now, lookup);
            }
            3 => {
                let answer = match next() % 4 {
                    0 => HomeserverAnswer::Done,
                    1 => HomeserverAnswer::NotFound,
                    2 => HomeserverAnswer::RetryLater(None),
                    _ => HomeserverAnswer::RetryLater(Some(Duration::from_millis(
                        u64::from(next()) * 1000,
                    ))),
                };
                if matches!(in_flight, Some(Action::Restart | Action::Send)) {
                    in_flight = None;
                }
                job.handle_homeserver(now, answer);
            }
            4 => {
                // Time runs to the job's own timer, or by a step when it has none.
                now = job.poll_timeout().map_or(now + Duration::from_millis(100), |at| at.max(now));
                job.handle_timeout(now);
            }
            5 => {
                now += Duration::from_secs(u64::from(next()) * 60);
                job.handle_timeout(now);
            }
            _ => {
                now += Duration::from_millis(u64::from(next()) * 10);
                job.handle_timeout(now);
            }
        }
        if let Some(at) = job.poll_timeout() {
            assert!(at <= now + Duration::from_secs(31 * 24 * 3600), "a timer beyond any delay");
        }
    }
});
