//! Delegated delayed leaves (MSC4195 with MSC4140): the service keeps a member's delayed leave
//! alive while the member's media connection lives on the SFU, and sends it when that connection
//! ends.
//!
//! A MatrixRTC client schedules its `leave` as a delayed event and restarts it while it runs; if
//! the client is killed or frozen, the homeserver sends the leave when the delay runs out, so no
//! ghost stays in the call. With a long delay (Element Call uses one hour when it delegates) the
//! client hands the restarts to this service, which sees the one thing that matters: whether the
//! member's LiveKit connection is alive. A member whose client is frozen but whose media lives
//! stays; one whose media dies is removed at once, not an hour later.
//!
//! The logic is the sans-IO [`job::Job`]; [`Delegations`] runs one small task per job, fed by
//! LiveKit webhooks ([`crate::webhook`]) and participant lookups (`RoomService.GetParticipant`),
//! and talks to the homeserver through [`homeserver::DelayedEvents`].
//!
//! Jobs live in memory: a restart of the service forgets them without sending anything, and the
//! homeserver's own timers take over (as lk-jwt-service without Redis).

pub mod homeserver;
pub mod job;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::Instrument as _;
use url::Url;

use self::homeserver::{DelayedEventAction, DelayedEvents};
use self::job::{Action, Job, Lookup, Outcome, SfuEvent};
use crate::room_service::RoomServiceClient;
use crate::secret::Secret;
use crate::webhook::{ParticipantChange, ParticipantEvent};

/// The most jobs one user has at a time; a newer one ends the user's oldest (which then sends
/// nothing: the homeserver's timer runs on).
pub const MAX_JOBS_PER_USER: usize = 32;
/// The most jobs the service runs at a time.
pub const MAX_JOBS: usize = 10_000;

/// One delayed leave handed to the service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delegation {
    /// The LiveKit room name.
    pub room: String,
    /// The member's LiveKit identity.
    pub identity: String,
    /// The Matrix user whose delayed event it is.
    pub user_id: String,
    /// The delay id: the capability to restart and send the event. Never logged.
    pub delay_id: Secret,
    /// The delay of the event.
    pub delay: Duration,
    /// The base URL of the user's homeserver client-server API.
    pub homeserver: Url,
}

impl Delegation {
    /// A delegation of `delay_id` (of `delay`) for `identity` in LiveKit room `room`.
    pub fn new(
        room: impl Into<String>,
        identity: impl Into<String>,
        user_id: impl Into<String>,
        delay_id: Secret,
        delay: Duration,
        homeserver: Url,
    ) -> Self {
        Self {
            room: room.into(),
            identity: identity.into(),
            user_id: user_id.into(),
            delay_id,
            delay,
            homeserver,
        }
    }
}

/// The service runs [`MAX_JOBS`] jobs already.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the service keeps {MAX_JOBS} delayed leaves already")]
#[non_exhaustive]
pub struct TooManyJobs;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct JobKey {
    room: String,
    identity: String,
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    user_id: String,
    events: mpsc::UnboundedSender<SfuEvent>,
    task: tokio::task::AbortHandle,
}

#[derive(Debug, Default)]
struct Registry {
    jobs: HashMap<JobKey, Entry>,
    next_generation: u64,
}

#[derive(Debug)]
struct Services {
    homeserver: DelayedEvents,
    rooms: RoomServiceClient,
    sanity_check: Option<Duration>,
}

/// The delegated delayed leaves the service keeps; cheap to clone.
#[derive(Debug, Clone)]
pub struct Delegations {
    registry: Arc<Mutex<Registry>>,
    services: Arc<Services>,
}

impl Delegations {
    /// Delegations that restart and send through `homeserver`, look participants up through
    /// `rooms`, and, with `sanity_check`, look connected participants up at that interval.
    pub fn new(
        homeserver: DelayedEvents,
        rooms: RoomServiceClient,
        sanity_check: Option<Duration>,
    ) -> Self {
        Self {
            registry: Arc::default(),
            services: Arc::new(Services { homeserver, rooms, sanity_check }),
        }
    }

    /// The homeserver client (to resolve a user's client-server API before delegating).
    pub fn homeserver(&self) -> &DelayedEvents {
        &self.services.homeserver
    }

    /// How many jobs run.
    pub fn len(&self) -> usize {
        self.registry().jobs.len()
    }

    /// Whether no job runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `delegation` over: a job for the same room and identity is replaced (and sends
    /// nothing), and the user's oldest job ends when it has [`MAX_JOBS_PER_USER`]. Must be called
    /// inside a Tokio runtime.
    pub fn delegate(&self, delegation: Delegation) -> Result<(), TooManyJobs> {
        let key = JobKey { room: delegation.room.clone(), identity: delegation.identity.clone() };
        let mut registry = self.registry();
        if let Some(old) = registry.jobs.remove(&key) {
            old.task.abort();
            tracing::info!(lk_room = %key.room, lk_identity = %key.identity, "delegated leave replaced by a newer one");
        }
        let of_user: Vec<(u64, JobKey)> = registry
            .jobs
            .iter()
            .filter(|(_, e)| e.user_id == delegation.user_id)
            .map(|(k, e)| (e.generation, k.clone()))
            .collect();
        if of_user.len() >= MAX_JOBS_PER_USER
            && let Some((_, oldest)) = of_user.into_iter().min_by_key(|(generation, _)| *generation)
            && let Some(old) = registry.jobs.remove(&oldest)
        {
            old.task.abort();
            tracing::warn!(user_id = %delegation.user_id, lk_room = %oldest.room, "too many delegated leaves for one user: the oldest is dropped");
        }
        if registry.jobs.len() >= MAX_JOBS {
            return Err(TooManyJobs);
        }
        let generation = registry.next_generation;
        registry.next_generation += 1;
        let (events, receiver) = mpsc::unbounded_channel();
        let seed = generation ^ ((std::process::id() as u64) << 32) ^ nanos_now();
        let user_id = delegation.user_id.clone();
        let job = Job::new(Instant::now(), delegation.delay, self.services.sanity_check, seed);
        // Not a child of the request's span: the job outlives the request.
        let span = tracing::info_span!(
            parent: None,
            "delegated_leave",
            lk_room = %delegation.room,
            lk_identity = %delegation.identity,
            user_id = %delegation.user_id,
        );
        let runner = Runner {
            job,
            key: key.clone(),
            generation,
            delegation,
            services: self.services.clone(),
            registry: Arc::downgrade(&self.registry),
            events: receiver,
        };
        let task = tokio::spawn(runner.run().instrument(span)).abort_handle();
        registry.jobs.insert(key, Entry { generation, user_id, events, task });
        Ok(())
    }

    /// A participant event from a LiveKit webhook; events for participants without a job are
    /// ignored.
    pub fn participant_event(&self, event: ParticipantEvent) {
        let key = JobKey { room: event.room, identity: event.identity };
        let registry = self.registry();
        let Some(entry) = registry.jobs.get(&key) else {
            tracing::debug!(lk_room = %key.room, lk_identity = %key.identity, "participant event without a delegated leave");
            return;
        };
        let event = match event.change {
            ParticipantChange::Joined => SfuEvent::Joined { sid: event.sid },
            ParticipantChange::Left { .. } => SfuEvent::Left { sid: event.sid },
        };
        // A job that just ended has dropped its receiver; nothing is lost.
        let _ = entry.events.send(event);
    }
}

/// Nanoseconds of the wall clock, to seed the jitter.
fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// The task of one job: performs its actions, feeds it events and time, and removes its entry
/// when it ends.
struct Runner {
    job: Job,
    key: JobKey,
    generation: u64,
    delegation: Delegation,
    services: Arc<Services>,
    registry: Weak<Mutex<Registry>>,
    events: mpsc::UnboundedReceiver<SfuEvent>,
}

impl Runner {
    async fn run(mut self) {
        tracing::info!(
            delay_ms = self.delegation.delay.as_millis() as u64,
            "taking the delayed leave over"
        );
        let mut was_connected = false;
        loop {
            while let Some(action) = self.job.poll_action() {
                self.perform(action).await;
            }
            if self.job.is_connected() && !was_connected {
                tracing::info!("participant connected: the service restarts the delayed leave");
            }
            was_connected = self.job.is_connected();
            if let Some(outcome) = self.job.outcome() {
                log_outcome(outcome);
                break;
            }
            let wake = self.job.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => self.job.handle_sfu_event(Instant::now(), event),
                    // The entry is gone: replaced, or the service is stopping.
                    None => return,
                },
                () = sleep_until(wake) => self.job.handle_timeout(Instant::now()),
            }
        }
        if let Some(registry) = self.registry.upgrade() {
            let mut registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
            if registry.jobs.get(&self.key).is_some_and(|e| e.generation == self.generation) {
                registry.jobs.remove(&self.key);
            }
        }
    }

    async fn perform(&mut self, action: Action) {
        let d = &self.delegation;
        match action {
            Action::LookUp => {
                let lookup = match self.services.rooms.get_participant(&d.room, &d.identity).await {
                    Ok(Some(participant)) => Lookup::Present { sid: participant.sid },
                    Ok(None) => Lookup::Absent,
                    Err(error) => {
                        tracing::warn!(%error, "cannot look the participant up on the SFU");
                        Lookup::Failed
                    }
                };
                self.job.handle_lookup(Instant::now(), lookup);
            }
            Action::Restart | Action::Send => {
                let what = if action == Action::Restart {
                    DelayedEventAction::Restart
                } else {
                    DelayedEventAction::Send
                };
                let answer = self.services.homeserver.act(&d.homeserver, &d.delay_id, what).await;
                tracing::debug!(?what, ?answer, "delayed leave");
                self.job.handle_homeserver(Instant::now(), answer);
            }
        }
    }
}

async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_outcome(outcome: Outcome) {
    match outcome {
        Outcome::Sent(reason) => {
            tracing::info!(?reason, "the participant's media is gone: leave sent");
        }
        Outcome::AlreadyGone(reason) => {
            tracing::info!(?reason, "the leave was already sent or cancelled");
        }
        Outcome::EventGone => {
            tracing::info!("the delayed leave is gone (sent, cancelled or fired): delegation ends");
        }
        Outcome::RestartsFailed => {
            tracing::warn!("the homeserver could not be reached to restart the delayed leave");
        }
        Outcome::SendFailed(reason) => {
            tracing::warn!(?reason, "the homeserver could not be reached to send the leave");
        }
    }
}
