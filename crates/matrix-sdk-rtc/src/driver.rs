//! [`LiveKitRoomDriver`]: connects to LiveKit while our device is in the room's call and really
//! tears the connection down when it is not.

use std::future::Future;
use std::time::Duration;

use matrix_sdk::Room;

use crate::call_session::CallState;
use crate::error::RtcError;
use crate::room_call::RoomCallObserver;
use crate::transports::livekit_service_url;

/// A live LiveKit connection, owned by the driver.
pub trait LiveKitConnection: Send + Sync + 'static {
    /// Closes the connection and releases everything it holds (sockets, tasks, tracks).
    fn disconnect(self) -> impl Future<Output = Result<(), RtcError>> + Send;
}

/// Opens LiveKit connections for a Matrix room's call.
pub trait LiveKitConnector: Send + Sync {
    /// The connection type.
    type Connection: LiveKitConnection;

    /// Connects to the SFU behind the authorization service at `service_url` for `room`.
    fn connect(
        &self,
        service_url: &str,
        room: &Room,
    ) -> impl Future<Output = Result<Self::Connection, RtcError>> + Send;
}

/// Options of the driver.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DriverOptions {
    /// Connect whenever any call is active in the room, even when our device is not a member
    /// (the prototype's behaviour). Default: only while our device is a member.
    pub follow_any_active_call: bool,
    /// The authorization service to connect through; discovered from the homeserver when `None`.
    pub service_url: Option<String>,
    /// First wait before retrying a failed connect; doubles up to `max_retry_delay`.
    pub retry_delay: Duration,
    /// Longest wait between connect attempts.
    pub max_retry_delay: Duration,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            follow_any_active_call: false,
            service_url: None,
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(30),
        }
    }
}

/// Connects a [`LiveKitConnector`] while the room's call wants us connected.
///
/// ```no_run
/// # async fn run(room: matrix_sdk::Room, connector: impl matrix_sdk_rtc::LiveKitConnector) -> Result<(), matrix_sdk_rtc::RtcError> {
/// use matrix_sdk_rtc::LiveKitRoomDriver;
/// LiveKitRoomDriver::new(room, connector).run().await
/// # }
/// ```
#[derive(Debug)]
pub struct LiveKitRoomDriver<C> {
    room: Room,
    connector: C,
    options: DriverOptions,
}

impl<C: LiveKitConnector> LiveKitRoomDriver<C> {
    /// A driver with the default options.
    pub fn new(room: Room, connector: C) -> Self {
        Self::with_options(room, connector, DriverOptions::default())
    }

    /// A driver with `options`.
    pub fn with_options(room: Room, connector: C, options: DriverOptions) -> Self {
        Self { room, connector, options }
    }

    /// Runs until the room's call observer ends (the client is dropped); disconnects then.
    pub async fn run(self) -> Result<(), RtcError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `shutdown` completes, then disconnects.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RtcError> {
        let client = self.room.client();
        let user_id = client.user_id().ok_or(RtcError::NotLoggedIn)?.to_string();
        let device_id = client.device_id().ok_or(RtcError::NotLoggedIn)?.to_string();
        let service_url = match &self.options.service_url {
            Some(url) => url.clone(),
            None => livekit_service_url(&client).await?,
        };
        let observer = RoomCallObserver::new(&self.room).await?;
        let mut states = observer.subscribe();
        let mut connection: Option<C::Connection> = None;
        let mut retry_delay = self.options.retry_delay;
        let mut retry_at: Option<tokio::time::Instant> = None;
        tokio::pin!(shutdown);

        loop {
            let wanted = {
                let state = states.borrow_and_update();
                wants_connection(&state, &user_id, &device_id, self.options.follow_any_active_call)
            };
            match (wanted, connection.is_some()) {
                (true, false) if retry_at.is_none_or(|at| tokio::time::Instant::now() >= at) => {
                    tracing::info!(%service_url, "the call wants us: connecting to LiveKit");
                    match self.connector.connect(&service_url, &self.room).await {
                        Ok(c) => {
                            connection = Some(c);
                            retry_delay = self.options.retry_delay;
                            retry_at = None;
                        }
                        Err(error) => {
                            tracing::warn!(%error, retry_in = ?retry_delay, "connecting to LiveKit failed");
                            retry_at = Some(tokio::time::Instant::now() + retry_delay);
                            retry_delay = (retry_delay * 2).min(self.options.max_retry_delay);
                        }
                    }
                    continue;
                }
                (false, true) => {
                    tracing::info!("the call no longer wants us: disconnecting from LiveKit");
                    if let Some(c) = connection.take()
                        && let Err(error) = c.disconnect().await
                    {
                        tracing::warn!(%error, "disconnecting from LiveKit failed");
                    }
                    retry_at = None;
                    retry_delay = self.options.retry_delay;
                    continue;
                }
                (false, false) => retry_at = None,
                _ => {}
            }
            let retry = async {
                match retry_at {
                    Some(at) if wanted => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = states.changed() => if changed.is_err() { break },
                () = retry => {}
                () = &mut shutdown => break,
            }
        }
        if let Some(c) = connection.take() {
            tracing::info!("driver stopping: disconnecting from LiveKit");
            c.disconnect().await?;
        }
        Ok(())
    }
}

/// Whether the driver should be connected in `state`.
pub fn wants_connection(
    state: &CallState,
    user_id: &str,
    device_id: &str,
    follow_any_active_call: bool,
) -> bool {
    if follow_any_active_call {
        state.is_active()
    } else {
        state.member(user_id, device_id).is_some()
    }
}
