//! [`LiveKitRoomDriver`]: joins and leaves a room's call as it starts and ends, keeps a LiveKit
//! connection up while we are in it, and really tears everything down when we are not.
//!
//! Who decides that we are in the call is the [`Presence`] policy: our own membership managed
//! by someone else (the default), or the driver itself joining with a ghost-free
//! [`OwnMembership`] while others are in the call ([`Presence::Follow`]) or all the time
//! ([`Presence::Always`]). Joining the call and connecting to LiveKit run side by side, both
//! bounded in time, and a shutdown or a change of the call interrupts either; so does a shutdown
//! interrupt the start (transport discovery, loading the call). Leaving and disconnecting are
//! bounded in time too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use matrix_sdk::Room;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::call_session::CallState;
use crate::error::RtcError;
use crate::own_membership::{DelayedLeave, JoinOptions, MembershipTimings, OwnMembership};
use crate::room_call::RoomCallObserver;
use crate::transports::livekit_service_url;

/// What a connector needs to connect for a room's call.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConnectRequest<'a> {
    /// The Matrix room.
    pub room: &'a Room,
    /// The authorization service we publish through (our transport, as our membership
    /// advertises it).
    pub service_url: &'a str,
    /// Our membership id when the driver joined with a sticky membership: `/get_token` binds
    /// the LiveKit identity to it. `None` for state memberships (`/sfu/get`).
    pub member_id: Option<&'a str>,
    /// The call as it changes (members, their transports), for subscribing to members on other
    /// SFUs and naming the members behind LiveKit participants.
    pub call: watch::Receiver<CallState>,
}

/// A live LiveKit connection, owned by the driver.
pub trait LiveKitConnection: Send + Sync + 'static {
    /// Closes the connection and releases everything it holds (sockets, tasks, tracks).
    fn disconnect(self) -> impl Future<Output = Result<(), RtcError>> + Send;

    /// Resolves when the connection ended by itself (the server closed it, or reconnecting
    /// gave up), with the reason; the driver then connects again with fresh credentials. The
    /// default never resolves.
    fn closed(&mut self) -> impl Future<Output = RtcError> + Send {
        std::future::pending()
    }

    /// Hands our delayed leave to the authorization service this connection's credentials came
    /// from (MSC4195 delegation): the service restarts it while the connection lives and sends
    /// it when the connection dies, so that we stay in the call while our media flows even when
    /// we cannot reach the homeserver, and leave it soon after our media stops. The driver
    /// calls this for every new delayed leave when [`DriverOptions::delegate_delayed_leave`]
    /// is set. The default says it is not supported.
    fn delegate_delayed_leave(&self, delayed_leave: DelayedLeave) -> DelegationFuture {
        drop(delayed_leave);
        Box::pin(async { Err(RtcError::Unsupported("handing the delayed leave to the service")) })
    }
}

/// What [`LiveKitConnection::delegate_delayed_leave`] returns: it owns what it needs.
pub type DelegationFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<(), RtcError>> + Send + 'static>>;

/// Opens LiveKit connections for a Matrix room's call.
pub trait LiveKitConnector: Send + Sync {
    /// The connection type.
    type Connection: LiveKitConnection;

    /// Connects to the SFU behind the authorization service of `request` for its room.
    fn connect(
        &self,
        request: ConnectRequest<'_>,
    ) -> impl Future<Output = Result<Self::Connection, RtcError>> + Send;
}

/// When the driver wants us in the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Presence {
    /// Connect while our own device's membership is in the call; someone else (the
    /// application, a widget) sends and removes the membership. The default.
    #[default]
    OwnMembership,
    /// Join the call with our own membership while anybody else is in it, and leave when the
    /// last other member has left: a bot that keeps people company.
    Follow,
    /// Join the call and stay in it, even alone: a camera that is watchable at any time.
    Always,
    /// Connect while any call is active, without a membership of our own. Other members do not
    /// count us as one of them (and Element Call shows no tile for us).
    AnyActiveCall,
}

impl Presence {
    /// Whether the driver sends (and removes) our membership itself.
    pub fn manages_membership(self) -> bool {
        matches!(self, Self::Follow | Self::Always)
    }

    /// Whether we should be in the call in `state`, as `user_id`'s `device_id`.
    ///
    /// ```
    /// use matrix_sdk_rtc::{CallState, driver::Presence};
    /// let empty = CallState::default();
    /// assert!(Presence::Always.wants_call(&empty, "@bot:example.org", "BOT"));
    /// assert!(!Presence::Follow.wants_call(&empty, "@bot:example.org", "BOT"));
    /// ```
    pub fn wants_call(self, state: &CallState, user_id: &str, device_id: &str) -> bool {
        match self {
            Self::OwnMembership => state.member(user_id, device_id).is_some(),
            Self::Follow => {
                state.members.iter().any(|m| m.user_id() != user_id || m.device_id() != device_id)
            }
            Self::Always => true,
            Self::AnyActiveCall => state.is_active(),
        }
    }
}

/// Options of the driver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverOptions {
    /// When we are in the call. Default [`Presence::OwnMembership`].
    pub presence: Presence,
    /// The authorization service to connect through (and advertise, when the driver sends our
    /// membership); discovered from the homeserver when `None`.
    pub service_url: Option<String>,
    /// With [`Presence::Follow`] and [`Presence::Always`]: the membership's timings.
    pub membership_timings: MembershipTimings,
    /// With [`Presence::Follow`] and [`Presence::Always`]: send a sticky membership (MSC4354)
    /// instead of the state event.
    pub sticky: bool,
    /// How long one connection attempt may take (credentials, signalling, media).
    pub connect_timeout: Duration,
    /// With [`Presence::Follow`] and [`Presence::Always`]: how long joining the call (until the
    /// membership's task runs) may take; a join that takes longer is tried again.
    pub join_timeout: Duration,
    /// First wait before retrying a failed connect; doubles up to `max_retry_delay`.
    pub retry_delay: Duration,
    /// Longest wait between connect attempts.
    pub max_retry_delay: Duration,
    /// With [`Presence::Follow`] and [`Presence::Always`]: hand every delayed leave of our
    /// membership to the authorization service once connected (opt-in; see
    /// [`LiveKitConnection::delegate_delayed_leave`]). Our own restarts go on as before: the
    /// service's come on top. Default `false`.
    pub delegate_delayed_leave: bool,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            presence: Presence::default(),
            service_url: None,
            membership_timings: MembershipTimings::default(),
            sticky: false,
            connect_timeout: Duration::from_secs(30),
            join_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(30),
            delegate_delayed_leave: false,
        }
    }
}

/// What the driver is doing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DriverStatus {
    /// Not in the call (waiting for one, or none is wanted).
    Idle,
    /// Joining the call and connecting to LiveKit (`attempt` counts connects since the last
    /// success).
    Connecting {
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Connected to LiveKit (and, when the driver manages it, our membership is being sent).
    Connected,
    /// A connect failed or the connection was lost; the next attempt comes after `retry_in`.
    Retrying {
        /// The attempt that failed (1 for the first), or 0 when an established connection was
        /// lost.
        attempt: u32,
        /// Why.
        error: Arc<RtcError>,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// Leaving the call and disconnecting.
    Leaving,
    /// The driver has stopped.
    Stopped,
}

type Pending<'a, T> = Option<Pin<Box<dyn Future<Output = T> + Send + 'a>>>;

/// How long disconnecting from LiveKit may take when leaving.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Joins, connects, leaves and disconnects as the room's call wants.
///
/// ```no_run
/// # async fn run(room: matrix_sdk::Room, connector: impl matrix_sdk_rtc::LiveKitConnector) -> Result<(), matrix_sdk_rtc::RtcError> {
/// use matrix_sdk_rtc::{DriverOptions, LiveKitRoomDriver, driver::Presence};
/// let mut options = DriverOptions::default();
/// options.presence = Presence::Follow;
/// LiveKitRoomDriver::with_options(room, connector, options)
///     .run_until(async { let _ = tokio::signal::ctrl_c().await; })
///     .await
/// # }
/// ```
#[derive(Debug)]
pub struct LiveKitRoomDriver<C> {
    room: Room,
    connector: C,
    options: DriverOptions,
    observer: Option<RoomCallObserver>,
    status: watch::Sender<DriverStatus>,
}

impl<C: LiveKitConnector> LiveKitRoomDriver<C> {
    /// A driver with the default options.
    pub fn new(room: Room, connector: C) -> Self {
        Self::with_options(room, connector, DriverOptions::default())
    }

    /// A driver with `options`.
    pub fn with_options(room: Room, connector: C, options: DriverOptions) -> Self {
        let (status, _) = watch::channel(DriverStatus::Idle);
        Self { room, connector, options, observer: None, status }
    }

    /// Follows the call through `observer` (which the application may watch too) instead of
    /// one of its own.
    pub fn with_observer(mut self, observer: RoomCallObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// What the driver is doing, as a watch channel.
    pub fn status(&self) -> watch::Receiver<DriverStatus> {
        self.status.subscribe()
    }

    /// Runs until the room's call observer ends (the client is dropped); leaves then.
    pub async fn run(self) -> Result<(), RtcError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `shutdown` completes, then leaves the call and disconnects (bounded in time).
    /// Errors only when it cannot start (not logged in, no transport to discover).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RtcError> {
        let client = self.room.client();
        let user_id = client.user_id().ok_or(RtcError::NotLoggedIn)?.to_string();
        let device_id = client.device_id().ok_or(RtcError::NotLoggedIn)?.to_string();
        tokio::pin!(shutdown);

        // The start asks the homeserver (discovery, the call's state): a shutdown meanwhile
        // ends the driver at once.
        let start = async {
            let service_url = match &self.options.service_url {
                Some(url) => url.clone(),
                None => livekit_service_url(&client).await?,
            };
            let observer = match self.observer.take() {
                Some(observer) => observer,
                None => RoomCallObserver::new(&self.room).await?,
            };
            Ok::<_, RtcError>((service_url, observer))
        };
        let started = tokio::select! {
            started = start => Some(started),
            () = &mut shutdown => None,
        };
        let (service_url, observer) = match started {
            Some(Ok(started)) => started,
            Some(Err(error)) => {
                self.set_status(DriverStatus::Stopped);
                return Err(error);
            }
            None => {
                tracing::info!("driver stopped while starting");
                self.set_status(DriverStatus::Stopped);
                return Ok(());
            }
        };
        let mut calls = observer.subscribe();
        let presence = self.options.presence;
        // One member id per driver: a sticky membership and its `/get_token` identity match.
        let member_id = (presence.manages_membership() && self.options.sticky)
            .then(|| uuid::Uuid::new_v4().to_string());

        let mut membership: Option<OwnMembership> = None;
        let mut connection: Option<C::Connection> = None;
        let mut joining: Pending<'_, Result<OwnMembership, RtcError>> = None;
        let mut connecting: Pending<'_, Result<C::Connection, RtcError>> = None;
        let mut leaving: Pending<'_, ()> = None;
        // Delegation: the membership's delayed leave as it changes, the last one handed over,
        // and the hand-over under way.
        let mut delayed_leave: Option<watch::Receiver<Option<DelayedLeave>>> = None;
        let mut delegated: Option<String> = None;
        let mut delegating: Pending<'_, Result<(), RtcError>> = None;
        let mut backoff = Backoff::new(self.options.retry_delay, self.options.max_retry_delay);
        let mut attempt = 0u32;
        let mut retry_at: Option<Instant> = None;
        // Joins that timed out are tried again, with their own backoff.
        let mut join_backoff = Backoff::new(self.options.retry_delay, self.options.max_retry_delay);
        let mut join_retry_at: Option<Instant> = None;

        let result = loop {
            let wanted = presence.wants_call(&calls.borrow_and_update(), &user_id, &device_id);
            if wanted && leaving.is_none() {
                let join_due = join_retry_at.is_none_or(|at| Instant::now() >= at);
                if presence.manages_membership()
                    && membership.is_none()
                    && joining.is_none()
                    && join_due
                {
                    join_retry_at = None;
                    let mut options = JoinOptions::new(service_url.clone());
                    options.timings = self.options.membership_timings.clone();
                    options.sticky = self.options.sticky;
                    options.member_id = member_id.clone();
                    tracing::info!(%service_url, "joining the call");
                    let room = self.room.clone();
                    let timeout = self.options.join_timeout;
                    joining = Some(Box::pin(async move {
                        tokio::time::timeout(timeout, OwnMembership::join_with(&room, options))
                            .await
                            .unwrap_or(Err(RtcError::Timeout("joining the call")))
                    }));
                }
                if self.options.delegate_delayed_leave
                    && delegating.is_none()
                    && let (Some(connection), Some(watch)) = (&connection, &delayed_leave)
                    && let Some(current) = watch.borrow().clone()
                    && delegated.as_deref() != Some(current.delay_id())
                {
                    delegated = Some(current.delay_id().to_owned());
                    delegating = Some(connection.delegate_delayed_leave(current));
                }
                let due = retry_at.is_none_or(|at| Instant::now() >= at);
                if connection.is_none() && connecting.is_none() && due {
                    attempt += 1;
                    retry_at = None;
                    self.set_status(DriverStatus::Connecting { attempt });
                    tracing::info!(%service_url, attempt, "connecting to LiveKit");
                    let request = ConnectRequest {
                        room: &self.room,
                        service_url: &service_url,
                        member_id: member_id.as_deref(),
                        call: calls.clone(),
                    };
                    let timeout = self.options.connect_timeout;
                    let connect = self.connector.connect(request);
                    connecting = Some(Box::pin(async move {
                        tokio::time::timeout(timeout, connect)
                            .await
                            .unwrap_or(Err(RtcError::Timeout("connecting to LiveKit")))
                    }));
                }
            } else if !wanted && leaving.is_none() {
                // Whatever was under way is abandoned; what exists is taken down.
                joining = None;
                connecting = None;
                retry_at = None;
                join_retry_at = None;
                attempt = 0;
                backoff.reset();
                join_backoff.reset();
                delayed_leave = None;
                delegated = None;
                delegating = None;
                if membership.is_some() || connection.is_some() {
                    tracing::info!("the call no longer wants us: leaving");
                    self.set_status(DriverStatus::Leaving);
                    leaving = Some(Box::pin(leave(membership.take(), connection.take())));
                } else if !matches!(*self.status.borrow(), DriverStatus::Idle) {
                    self.set_status(DriverStatus::Idle);
                }
            }

            tokio::select! {
                changed = calls.changed() => if changed.is_err() { break Ok(()) },
                joined = poll(&mut joining) => match joined {
                    Ok(joined) => {
                        delayed_leave = Some(joined.delayed_leave());
                        delegated = None;
                        membership = Some(joined);
                        join_backoff.reset();
                    }
                    // The homeserver did not answer in time: try again.
                    Err(error @ RtcError::Timeout(_)) => {
                        let retry_in = join_backoff.next_delay();
                        tracing::warn!(%error, ?retry_in, "joining the call failed");
                        join_retry_at = Some(Instant::now() + retry_in);
                    }
                    // Not logged in, or no sticky events on the server: nothing to retry.
                    Err(error) => break Err(error),
                },
                connected = poll(&mut connecting) => match connected {
                    Ok(c) => {
                        tracing::info!(attempt, "connected to LiveKit");
                        connection = Some(c);
                        attempt = 0;
                        backoff.reset();
                        self.set_status(DriverStatus::Connected);
                    }
                    Err(error) => {
                        let retry_in = backoff.next_delay();
                        tracing::warn!(%error, attempt, ?retry_in, "connecting to LiveKit failed");
                        retry_at = Some(Instant::now() + retry_in);
                        self.set_status(DriverStatus::Retrying { attempt, error: Arc::new(error), retry_in });
                    }
                },
                error = closed(&mut connection) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(%error, ?retry_in, "the LiveKit connection ended; connecting again");
                    connection = None;
                    attempt = 0;
                    retry_at = Some(Instant::now() + retry_in);
                    self.set_status(DriverStatus::Retrying { attempt, error: Arc::new(error), retry_in });
                }
                () = poll(&mut leaving) => {
                    tracing::info!("left the call");
                    self.set_status(DriverStatus::Idle);
                }
                delegation = poll(&mut delegating) => match delegation {
                    Ok(()) => tracing::info!("delayed leave handed to the authorization service"),
                    // Our own restarts keep the membership alive all the same.
                    Err(error) => tracing::warn!(%error, "the authorization service did not take our delayed leave"),
                },
                () = delayed_leave_changed(&mut delayed_leave) => {}
                () = sleep_until(earliest(retry_at, join_retry_at).filter(|_| wanted)) => {}
                () = &mut shutdown => break Ok(()),
            }
        };

        // Stop: finish a leave under way, then leave what is left.
        drop(joining);
        drop(connecting);
        self.set_status(DriverStatus::Leaving);
        if let Some(leaving) = leaving {
            leaving.await;
        }
        if membership.is_some() || connection.is_some() {
            tracing::info!("driver stopping: leaving the call");
            leave(membership.take(), connection.take()).await;
        }
        drop(observer);
        self.set_status(DriverStatus::Stopped);
        result
    }

    fn set_status(&self, status: DriverStatus) {
        self.status.send_replace(status);
    }
}

/// Leaves the call and disconnects, side by side (each is bounded in time).
async fn leave<L: LiveKitConnection>(membership: Option<OwnMembership>, connection: Option<L>) {
    let membership = async {
        if let Some(membership) = membership
            && let Err(error) = membership.leave().await
        {
            tracing::warn!(%error, "leaving the call failed; the delayed leave will do it");
        }
    };
    let connection = async {
        if let Some(connection) = connection {
            match tokio::time::timeout(DISCONNECT_TIMEOUT, connection.disconnect()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "disconnecting from LiveKit failed"),
                Err(_) => tracing::warn!(
                    timeout = ?DISCONNECT_TIMEOUT,
                    "disconnecting from LiveKit took too long; dropping the connection"
                ),
            }
        }
    };
    tokio::join!(membership, connection);
}

/// Resolves when `connection` ended by itself; pending while there is none.
async fn closed<L: LiveKitConnection>(connection: &mut Option<L>) -> RtcError {
    match connection.as_mut() {
        Some(connection) => connection.closed().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the membership's delayed leave changes; pending while there is no membership
/// (or its task has ended).
async fn delayed_leave_changed(watch: &mut Option<watch::Receiver<Option<DelayedLeave>>>) {
    let changed = match watch.as_mut() {
        Some(watch) => watch.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The result of a pending future, clearing it; pending while there is none.
async fn poll<T>(pending: &mut Pending<'_, T>) -> T {
    match pending.as_mut() {
        Some(future) => {
            let result = future.await;
            *pending = None;
            result
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use matrix_sdk::authentication::matrix::MatrixSession;
    use matrix_sdk::ruma::{OwnedRoomId, owned_device_id, owned_user_id};
    use matrix_sdk::{Client, SessionMeta, SessionTokens};
    use serde_json::json;
    use tokio::sync::oneshot;

    use super::*;
    use crate::CallSession;
    use crate::membership::MembershipEvent;

    fn state(members: &[(&str, &str)]) -> CallState {
        let mut session = CallSession::new();
        for (i, (user, device)) in members.iter().enumerate() {
            session.set_room_membership(user, true);
            let event = json!({
                "type": "org.matrix.msc3401.call.member",
                "state_key": format!("_{user}_{device}_m.call"),
                "sender": user, "origin_server_ts": 1_000 + i,
                "content": {"application": "m.call", "call_id": "", "scope": "m.room",
                            "device_id": device, "expires": 14_400_000,
                            "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
                            "foci_preferred": [{"type": "livekit", "livekit_service_url": "https://a.example",
                                                "livekit_alias": "!r:example.org"}]}
            });
            session.handle_event(&MembershipEvent::from_json(&event, 1_000).unwrap());
        }
        session.state(2_000)
    }

    const ME: (&str, &str) = ("@bot:example.org", "BOT");
    const ALICE: (&str, &str) = ("@alice:example.org", "ALICE");

    #[test]
    fn each_presence_wants_the_call_when_it_should() {
        let cases = [
            (vec![], [false, false, true, false]),
            (vec![ME], [true, false, true, true]),
            (vec![ALICE], [false, true, true, true]),
            (vec![ALICE, ME], [true, true, true, true]),
            // Our user on another device is somebody else.
            (vec![("@bot:example.org", "PHONE")], [false, true, true, true]),
        ];
        let presences =
            [Presence::OwnMembership, Presence::Follow, Presence::Always, Presence::AnyActiveCall];
        for (members, expected) in cases {
            let state = state(&members);
            for (presence, expected) in presences.iter().zip(expected) {
                assert_eq!(
                    presence.wants_call(&state, ME.0, ME.1),
                    expected,
                    "{presence:?} with {members:?}"
                );
            }
        }
        assert!(Presence::Follow.manages_membership() && Presence::Always.manages_membership());
        assert!(!Presence::OwnMembership.manages_membership());
        assert!(!Presence::AnyActiveCall.manages_membership());
    }

    /// A logged-in client of a homeserver at `homeserver` (nothing is asked of it unless a test
    /// wants to), and a joined room of it, without any network.
    async fn room_of(homeserver: &str) -> Room {
        use matrix_sdk::cross_process_lock::CrossProcessLockConfig;
        use matrix_sdk_base::store::StoreConfig;
        use matrix_sdk_base::{BaseClient, DmRoomDefinition, RoomState, ThreadingSupport};

        let base = BaseClient::new(
            StoreConfig::new(CrossProcessLockConfig::SingleProcess),
            ThreadingSupport::Disabled,
            DmRoomDefinition::default(),
        );
        let client = Client::builder()
            .homeserver_url(homeserver)
            .base_client(base.clone())
            .build()
            .await
            .unwrap();
        client
            .restore_session(MatrixSession {
                meta: SessionMeta {
                    user_id: owned_user_id!("@bot:example.org"),
                    device_id: owned_device_id!("BOT"),
                },
                tokens: SessionTokens { access_token: "test".to_owned(), refresh_token: None },
            })
            .await
            .unwrap();
        let room_id: OwnedRoomId = "!call:example.org".try_into().unwrap();
        base.get_or_create_room(&room_id, RoomState::Joined);
        client.get_room(&room_id).expect("the room exists")
    }

    /// What the hanging connector saw, in order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Seen {
        /// A connect began.
        Started,
        /// A connect was dropped before it finished (timed out, or abandoned).
        Abandoned,
    }

    type SeenLog = Vec<(Seen, Instant)>;

    /// A connector whose connects never finish.
    #[derive(Clone)]
    struct HangingConnector {
        seen: Arc<watch::Sender<SeenLog>>,
    }

    impl HangingConnector {
        fn new() -> Self {
            Self { seen: Arc::new(watch::channel(Vec::new()).0) }
        }

        fn record(&self, seen: Seen) {
            self.seen.send_modify(|log| log.push((seen, Instant::now())));
        }

        /// Waits until `count` things were seen, up to a minute of the test's clock.
        async fn wait_seen(&self, count: usize) -> SeenLog {
            let mut seen = self.seen.subscribe();
            within_a_minute(seen.wait_for(|log| log.len() >= count)).await.unwrap().clone()
        }
    }

    /// `future`'s output, or a failed test after a minute (with paused time: as soon as
    /// everything else waits for longer).
    async fn within_a_minute<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), future)
            .await
            .expect("what the test waits for happens within a minute")
    }

    /// Marks a connect abandoned when it is dropped.
    struct Abandon(HangingConnector);

    impl Drop for Abandon {
        fn drop(&mut self) {
            self.0.record(Seen::Abandoned);
        }
    }

    struct NeverConnected;

    impl LiveKitConnection for NeverConnected {
        async fn disconnect(self) -> Result<(), RtcError> {
            Ok(())
        }
    }

    impl LiveKitConnector for HangingConnector {
        type Connection = NeverConnected;

        fn connect(
            &self,
            _request: ConnectRequest<'_>,
        ) -> impl Future<Output = Result<NeverConnected, RtcError>> + Send {
            let connector = self.clone();
            async move {
                connector.record(Seen::Started);
                let _abandon = Abandon(connector);
                std::future::pending().await
            }
        }
    }

    /// A driver following Alice's call (so it wants to connect at once), with a connector that
    /// hangs, running in a task until `stop` is sent.
    struct Running {
        connector: HangingConnector,
        status: watch::Receiver<DriverStatus>,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<(), RtcError>>,
        _call: watch::Sender<CallState>,
    }

    /// Runs a driver of `room` with `options` while Alice is in the call.
    fn spawn(room: Room, options: DriverOptions) -> Running {
        let (call, state_rx) = watch::channel(state(&[ALICE]));
        let observer = RoomCallObserver::from_state(&room, state_rx);
        let connector = HangingConnector::new();
        let driver = LiveKitRoomDriver::with_options(room, connector.clone(), options)
            .with_observer(observer);
        let status = driver.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(driver.run_until(async {
            let _ = stopped.await;
        }));
        Running { connector, status, stop, task, _call: call }
    }

    async fn run_hanging(connect_timeout: Duration) -> Running {
        let options = DriverOptions {
            presence: Presence::AnyActiveCall,
            service_url: Some("https://rtc.example.org/jwt".to_owned()),
            connect_timeout,
            retry_delay: Duration::from_secs(1),
            ..DriverOptions::default()
        };
        spawn(room_of("http://127.0.0.1:9").await, options)
    }

    /// A homeserver that answers `/versions` (matrix-sdk asks it by itself too) and never
    /// anything else: the first line of each request it holds, as it arrives; the connections
    /// stay open while the receiver lives.
    async fn silent_homeserver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (requests, received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = vec![0; 4096];
                let read = socket.read(&mut buffer).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buffer[..read]);
                let line = request.lines().next().unwrap_or_default().to_owned();
                if line.starts_with("GET /_matrix/client/versions ") {
                    let body = json!({"versions": ["v1.11"],
                                      "unstable_features": {"org.matrix.msc4140": true}})
                    .to_string();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    continue;
                }
                if requests.send(line).is_err() {
                    return;
                }
                held.push(socket);
            }
        });
        (url, received)
    }

    /// Sends the stop and expects the driver to end within `within` (of the test's clock).
    async fn stop_within(running: Running, within: Duration) -> watch::Receiver<DriverStatus> {
        let Running { status, stop, task, .. } = running;
        let _ = stop.send(());
        let result = tokio::time::timeout(within, task)
            .await
            .unwrap_or_else(|_| panic!("the driver did not stop within {within:?}"))
            .expect("the driver task did not panic");
        let () = result.expect("the driver stopped without an error");
        assert!(matches!(*status.borrow(), DriverStatus::Stopped), "{:?}", *status.borrow());
        status
    }

    /// A connect that never finishes is abandoned after `connect_timeout`, reported as a
    /// timeout, and tried again after the backoff.
    #[tokio::test(start_paused = true)]
    async fn a_hanging_connect_times_out_and_is_tried_again() {
        let running = run_hanging(Duration::from_secs(5)).await;
        let mut status = running.status.clone();
        let retrying =
            within_a_minute(status.wait_for(|s| matches!(s, DriverStatus::Retrying { .. })))
                .await
                .unwrap()
                .clone();
        let DriverStatus::Retrying { attempt, error, retry_in } = retrying else { unreachable!() };
        assert_eq!(attempt, 1);
        assert!(
            matches!(*error, RtcError::Timeout("connecting to LiveKit")),
            "the error is the connect's deadline: {error}"
        );
        assert!(retry_in >= Duration::from_secs(1) && retry_in <= Duration::from_millis(1100));

        let seen = running.connector.wait_seen(3).await;
        let kinds: Vec<Seen> = seen.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds, [Seen::Started, Seen::Abandoned, Seen::Started]);
        assert_eq!(seen[1].1 - seen[0].1, Duration::from_secs(5), "abandoned at the deadline");
        // After the backoff (tokio's timers round up to the millisecond).
        let waited = seen[2].1 - seen[1].1;
        assert!(waited >= retry_in && waited <= retry_in + Duration::from_millis(1), "{waited:?}");
        within_a_minute(status.wait_for(|s| matches!(s, DriverStatus::Connecting { attempt: 2 })))
            .await
            .unwrap();

        stop_within(running, Duration::from_secs(1)).await;
    }

    /// A stop while a connect hangs (its deadline an hour away) ends the driver at once and
    /// abandons the connect.
    #[tokio::test(start_paused = true)]
    async fn a_stop_while_a_connect_hangs_returns_promptly() {
        let running = run_hanging(Duration::from_secs(3600)).await;
        let connector = running.connector.clone();
        let seen = connector.wait_seen(1).await;
        assert_eq!(seen[0].0, Seen::Started);
        let asked = Instant::now();

        stop_within(running, Duration::from_secs(1)).await;
        assert!(asked.elapsed() < Duration::from_secs(1));
        let seen = connector.seen.borrow().clone();
        let kinds: Vec<Seen> = seen.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(kinds, [Seen::Started, Seen::Abandoned], "the connect was dropped, not left");
    }

    /// A stop while the start hangs (transport discovery asks a homeserver that never answers)
    /// ends the driver at once. Real time: the request's own deadline (10 s) is a real one.
    #[tokio::test]
    async fn a_stop_while_discovery_hangs_returns_promptly() {
        let (homeserver, mut requests) = silent_homeserver().await;
        let options =
            DriverOptions { presence: Presence::AnyActiveCall, ..DriverOptions::default() };
        let running = spawn(room_of(&homeserver).await, options);
        let connector = running.connector.clone();

        // The discovery request reached the homeserver, which holds it without answering.
        let request = tokio::time::timeout(Duration::from_secs(10), requests.recv())
            .await
            .expect("the driver asks the homeserver")
            .unwrap();
        assert!(
            request.starts_with("GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports "),
            "{request}"
        );
        stop_within(running, Duration::from_secs(2)).await;
        assert_eq!(connector.seen.borrow().len(), 0, "no connect began before the start ended");
    }

    /// A join that hangs (the homeserver never answers) is abandoned at `join_timeout` and
    /// tried again; the driver keeps running, and a stop still ends it at once. Real time, for
    /// the same reason as above.
    #[tokio::test]
    async fn a_hanging_join_times_out_and_is_tried_again() {
        let (homeserver, mut requests) = silent_homeserver().await;
        let options = DriverOptions {
            presence: Presence::Follow,
            service_url: Some("https://rtc.example.org/jwt".to_owned()),
            join_timeout: Duration::from_millis(300),
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_millis(100),
            connect_timeout: Duration::from_secs(3600),
            ..DriverOptions::default()
        };
        let running = spawn(room_of(&homeserver).await, options);

        // Each join (of a state membership) first lists the delayed events an earlier run may
        // have left; the homeserver holds that request. A second one means the first join was
        // given up and a new one began (nothing else asks for that listing; matrix-sdk's own
        // requests, such as account data, are skipped).
        let listings = async {
            let mut listings = 0;
            while listings < 2 {
                let request = requests.recv().await.expect("the homeserver runs");
                if request
                    .starts_with("GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events ")
                {
                    listings += 1;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), listings)
            .await
            .expect("a second join begins after the first timed out");
        assert!(!running.task.is_finished(), "a join that timed out does not end the driver");
        assert!(matches!(*running.status.borrow(), DriverStatus::Connecting { attempt: 1 }));
        stop_within(running, Duration::from_secs(2)).await;
    }
}
