//! `ELEMENT_CALL_URL`: Element Call hosted as a widget instead of the program's own media.

use std::time::Duration;

use matrix_sdk_rtc_widget::{ElementCallHost, HostEvent, HostOptions, SessionEnd};
use tokio::sync::mpsc;

use crate::Signals;
use crate::config::WidgetHosting;
use crate::failure::{Failure, Kind};

/// How long Element Call has to leave the call after SIGINT/SIGTERM before the host ends its
/// session anyway (and sends its delayed leave itself).
const HANG_UP_DEADLINE: Duration = Duration::from_secs(5);

/// Hosts Element Call for `room` until a signal or a fatal error; prints the page's URL on
/// stdout (it holds the page's secret, so it is not logged).
pub(crate) async fn host(
    hosting: &WidgetHosting,
    allow_insecure: bool,
    room: matrix_sdk::Room,
    signals: &mut Signals,
    fatal: &mut mpsc::Receiver<Failure>,
) -> Result<(), Failure> {
    let mut options = HostOptions::new(hosting.element_call_url.clone());
    if let Some(id) = &hosting.widget_id {
        options.widget_id = id.clone();
    }
    options.page_url = hosting.page_url.clone();
    options.allow_insecure = allow_insecure;
    let mut host = ElementCallHost::start(room, options).await.map_err(|error| {
        let kind = match error {
            matrix_sdk_rtc_widget::HostError::Config(_) => Kind::Config,
            _ => Kind::Internal,
        };
        Failure { kind, message: format!("cannot host Element Call: {error}") }
    })?;
    let mut events = host.events().ok_or_else(|| Failure::internal("no host events"))?;
    println!("Element Call is hosted for this account: open {}", host.page_url());
    tracing::info!(
        page = host.page_origin(),
        "hosting Element Call: open the page printed on stdout (its URL holds a secret, so it is not logged)"
    );
    let outcome = loop {
        tokio::select! {
            () = signals.next() => {
                tracing::info!("stopping: Element Call leaves the call");
                break Ok(());
            }
            failure = fatal.recv() => {
                break Err(failure.unwrap_or_else(|| Failure::internal("the status tasks stopped")));
            }
            event = events.recv() => match event {
                Some(event) => log(&event),
                None => break Err(Failure::internal("the widget host stopped")),
            },
        }
    };
    host.shutdown(HANG_UP_DEADLINE).await;
    while let Ok(event) = events.try_recv() {
        log(&event);
    }
    tracing::info!("stopped hosting Element Call");
    outcome
}

fn log(event: &HostEvent) {
    match event {
        HostEvent::PageConnected => {
            tracing::info!("a page opened the host: Element Call is loading")
        }
        HostEvent::Capabilities(grant) => tracing::info!(
            granted = grant.approved.len(),
            refused = ?grant.refused,
            "Element Call's capabilities decided"
        ),
        HostEvent::Joined => tracing::info!("Element Call joined the call"),
        HostEvent::HungUp => tracing::info!("Element Call left the call"),
        HostEvent::DeviceMute { audio, video } => {
            tracing::info!(?audio, ?video, "Element Call switched its microphone or camera")
        }
        HostEvent::Closed => tracing::info!("Element Call closed"),
        HostEvent::MessageRefused(why) => {
            tracing::warn!(%why, "a message from the page was refused")
        }
        HostEvent::PageDisconnected { end, delayed_events_sent } => {
            let how = match end {
                SessionEnd::Closed => "Element Call closed",
                SessionEnd::PageGone => "the page went away",
                SessionEnd::Stopped => "the host stopped it",
                _ => "the widget driver stopped",
            };
            tracing::info!(delayed_events_sent, "the page's session ended: {how}");
        }
        _ => tracing::debug!(?event, "host event"),
    }
}
