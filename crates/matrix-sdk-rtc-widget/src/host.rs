//! [`ElementCallHost`]: the running host, what it reports, and how it stops.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use matrix_sdk::Room;
use tokio::sync::{Semaphore, mpsc, oneshot};
use url::Url;

use crate::capabilities::{CapabilityPolicy, Grant};
use crate::relay::WidgetAction;
use crate::secret::Secret;
use crate::session::Control;
use crate::widget_url::WidgetUrlParts;
use crate::{HostError, HostOptions, server};

/// Events queued for the application; beyond this they are dropped (with a debug line).
const EVENT_QUEUE: usize = 64;

/// What happens in the host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostEvent {
    /// A page opened the host; its Element Call is loading, with a widget driver of its own.
    PageConnected,
    /// Element Call asked for capabilities; what the policy made of them.
    Capabilities(Grant),
    /// Element Call joined the call.
    Joined,
    /// Element Call left the call (its hang-up button, or the host's [`ElementCallHost::hang_up`]).
    HungUp,
    /// Element Call switched the microphone (`audio`) or camera (`video`) on or off.
    DeviceMute {
        /// The microphone is on.
        audio: Option<bool>,
        /// The camera is on.
        video: Option<bool>,
    },
    /// Element Call is done (after a hang-up) and was removed from the page.
    Closed,
    /// A message from the page was not relayed (malformed, for another widget, or in a
    /// direction the widget may not use); why.
    MessageRefused(String),
    /// The page's session ended.
    PageDisconnected {
        /// How.
        end: SessionEnd,
        /// Element Call's delayed events (its scheduled leave) the host sent because Element
        /// Call had not.
        delayed_events_sent: usize,
    },
}

impl From<WidgetAction> for HostEvent {
    fn from(action: WidgetAction) -> Self {
        match action {
            WidgetAction::Joined => Self::Joined,
            WidgetAction::HungUp => Self::HungUp,
            WidgetAction::Closed => Self::Closed,
            WidgetAction::DeviceMute { audio, video } => Self::DeviceMute { audio, video },
        }
    }
}

/// How a page's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// Element Call closed after leaving the call.
    Closed,
    /// The page went away (closed, reloaded, lost).
    PageGone,
    /// The host stopped it.
    Stopped,
    /// The widget driver stopped.
    DriverStopped,
}

/// Queues `event` for the application, or drops it if nobody keeps up.
pub(crate) fn report(events: &mpsc::Sender<HostEvent>, event: HostEvent) {
    if let Err(mpsc::error::TrySendError::Full(event)) = events.try_send(event) {
        tracing::debug!(?event, "host event dropped: the application does not read them");
    }
}

/// What the server and the sessions share.
pub(crate) struct Shared {
    pub(crate) room: Room,
    pub(crate) widget_url: WidgetUrlParts,
    pub(crate) policy: CapabilityPolicy,
    /// `http://127.0.0.1:<port>` (or the `localhost` form given).
    pub(crate) page_origin: String,
    /// `127.0.0.1:<port>`: the `Host` the page is asked for.
    pub(crate) authority: String,
    pub(crate) secret: Secret,
    pub(crate) events: mpsc::Sender<HostEvent>,
    /// One page at a time: its session holds the permit until it has ended.
    pub(crate) slot: Arc<Semaphore>,
    /// The running session's control channel.
    pub(crate) control: Mutex<Option<mpsc::Sender<Control>>>,
}

/// Element Call hosted for a room: open [`page_url`](Self::page_url) in a browser and
/// Element Call is in the room's call as the client's account and device, its requests executed
/// by matrix-sdk's widget driver under a [`CapabilityPolicy`].
///
/// The client must be syncing (the driver reads events, state and to-device messages as they
/// arrive) and the room joined. Do not also run this crate's sibling membership or media key
/// exchange for the same device in the same room: Element Call does both itself.
///
/// ```no_run
/// # async fn run(room: matrix_sdk::Room) -> Result<(), matrix_sdk_rtc_widget::HostError> {
/// use std::time::Duration;
/// use matrix_sdk_rtc_widget::{ElementCallHost, HostOptions};
///
/// let options = HostOptions::new("https://call.element.io".parse().unwrap());
/// let host = ElementCallHost::start(room, options).await?;
/// println!("open {}", host.page_url());
/// tokio::signal::ctrl_c().await.ok();
/// host.shutdown(Duration::from_secs(5)).await;
/// # Ok(()) }
/// ```
pub struct ElementCallHost {
    shared: Arc<Shared>,
    page_url: Url,
    events: Option<mpsc::Receiver<HostEvent>>,
    stop_server: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for ElementCallHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElementCallHost")
            .field("page", &self.shared.page_origin)
            .finish_non_exhaustive()
    }
}

impl ElementCallHost {
    /// Starts serving the host page for `room` on this machine.
    pub async fn start(room: Room, options: HostOptions) -> Result<Self, HostError> {
        let element_call = options.element_call_page()?;
        let (page, port) = options.page_address()?;
        if options.widget_id.trim().is_empty() || options.widget_id.len() > 200 {
            return Err(HostError::Config("the widget id must be 1 to 200 characters".into()));
        }
        let client = room.client();
        let (Some(user_id), Some(device_id)) = (client.user_id(), client.device_id()) else {
            return Err(HostError::Config("the client is not logged in".into()));
        };
        let policy = options.policy.clone().unwrap_or_else(|| {
            CapabilityPolicy::element_call(user_id.as_str(), device_id.as_str())
        });

        let address = format!("127.0.0.1:{port}");
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|source| HostError::Listen { address: address.clone(), source })?;
        let port =
            listener.local_addr().map_err(|source| HostError::Listen { address, source })?.port();
        let host = page.host_str().unwrap_or("127.0.0.1").to_owned();
        let authority = format!("{host}:{port}");
        let page_origin = format!("http://{authority}");
        let secret = Secret::random().map_err(|e| HostError::Random(e.to_string()))?;
        let mut page_url: Url = format!("{page_origin}/")
            .parse()
            .map_err(|e: url::ParseError| HostError::Config(e.to_string()))?;
        page_url.query_pairs_mut().append_pair("secret", secret.expose());

        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let shared = Arc::new(Shared {
            room,
            widget_url: WidgetUrlParts {
                element_call,
                widget_id: options.widget_id.clone(),
                parent: page_url.clone(),
                skip_lobby: options.skip_lobby,
            },
            policy,
            page_origin,
            authority,
            secret,
            events: events_tx,
            slot: Arc::new(Semaphore::new(1)),
            control: Mutex::new(None),
        });
        let (stop_server, stopped) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, "the host page's server failed");
            }
        });
        tracing::info!(page = %shared.page_origin, element_call = %shared.widget_url.element_call, "hosting Element Call");
        Ok(Self { shared, page_url, events: Some(events), stop_server: Some(stop_server), server })
    }

    /// The page to open, with its per-run secret in the query: whoever has this URL is in the
    /// call as this account. Show it to the person who is to open it; never log it.
    pub fn page_url(&self) -> &Url {
        &self.page_url
    }

    /// The page's origin (no secret): what Element Call knows as its parent.
    pub fn page_origin(&self) -> &str {
        &self.shared.page_origin
    }

    /// The host's events; `None` after the first call.
    pub fn events(&mut self) -> Option<mpsc::Receiver<HostEvent>> {
        self.events.take()
    }

    /// Whether a page is connected (its Element Call loading or in the call).
    pub fn page_connected(&self) -> bool {
        self.shared.slot.available_permits() == 0
    }

    /// Asks Element Call to leave the call, as its own hang-up button does, and waits until
    /// its session has ended (Element Call closed, the page went away) or `within` has passed.
    /// Returns whether the session ended in time (also when no page was connected).
    pub async fn hang_up(&self, within: Duration) -> bool {
        let control = self.shared.control.lock().ok().and_then(|c| c.clone());
        let Some(control) = control else {
            return true;
        };
        if control.send(Control::HangUp).await.is_err() {
            return true;
        }
        self.session_ended(within).await
    }

    async fn session_ended(&self, within: Duration) -> bool {
        match tokio::time::timeout(within, self.shared.slot.acquire()).await {
            Ok(Ok(_permit)) => true,
            Ok(Err(_)) => true,
            Err(_) => false,
        }
    }

    /// Ends hosting: Element Call is asked to leave the call and given `within` for it; then
    /// the page's session is ended anyway (delayed events Element Call scheduled, its leave,
    /// are sent), the page is told and the server stops. No page opens the host afterwards.
    pub async fn shutdown(mut self, within: Duration) {
        let left = self.hang_up(within).await;
        if !left {
            tracing::warn!("Element Call did not leave in time; ending its session");
            let control = self.shared.control.lock().ok().and_then(|c| c.clone());
            if let Some(control) = control {
                let _ = control.send(Control::Stop).await;
            }
            // The session sends the leftover delayed events (bounded) and closes the page.
            let _ = self.session_ended(Duration::from_secs(10)).await;
        }
        self.shared.slot.close();
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.server).await;
        self.server.abort();
    }
}

impl Drop for ElementCallHost {
    fn drop(&mut self) {
        if let Some(control) = self.shared.control.lock().ok().and_then(|c| c.clone()) {
            let _ = control.try_send(Control::Stop);
        }
        self.server.abort();
    }
}
