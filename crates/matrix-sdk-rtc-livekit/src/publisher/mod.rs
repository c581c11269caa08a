//! Publishing our media: a [`VideoFeed`] and an [`AudioFeed`], each opened anew for every
//! connection and pumped into its LiveKit track by a task of its own.

mod audio;
mod video;

use std::time::Duration;

use livekit_str0m::Room;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use audio::{AudioFeed, PcmSender};
pub use video::{FrameSender, VideoFeed};

use crate::error::Error;
use crate::events::CallEvent;

/// How long stopping a publisher may take before its task is aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves once `stop` says so (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A publishing task and the switch that stops it.
#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Starts `run` with the receiving end of the stop switch.
    fn spawn<F>(run: impl FnOnce(watch::Receiver<bool>) -> F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Self { stop, task: tokio::spawn(run(stopped)) }
    }

    /// Starts `run` on a blocking thread (synchronous sources and encoders); it must check
    /// the switch at least every few tens of milliseconds.
    fn spawn_blocking(run: impl FnOnce(watch::Receiver<bool>) + Send + 'static) -> Self {
        let (stop, stopped) = watch::channel(false);
        Self { stop, task: tokio::task::spawn_blocking(move || run(stopped)) }
    }

    /// Stops it within a bounded time.
    async fn stop(mut self, what: &str) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_TIMEOUT, &mut self.task).await.is_err() {
            tracing::warn!("the {what} publisher did not stop in time; aborted");
            self.task.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// What a connection publishes.
#[derive(Debug, Default)]
pub(crate) struct Publishers {
    video: Option<Running>,
    audio: Option<Running>,
}

impl Publishers {
    /// Opens the feeds' sources and publishes their tracks on `room`; nothing is left running
    /// when one of them fails.
    pub(crate) async fn start(
        room: &Room,
        video: Option<&VideoFeed>,
        audio: Option<&AudioFeed>,
        events: mpsc::Sender<CallEvent>,
        stats_interval: Duration,
        encrypted: bool,
    ) -> Result<Self, Error> {
        let mut publishers = Self::default();
        if let Some(feed) = audio {
            publishers.audio =
                Some(audio::start(room, feed, events.clone(), stats_interval, encrypted).await?);
        }
        if let Some(feed) = video {
            publishers.video =
                Some(video::start(room, feed, events, stats_interval, encrypted).await?);
        }
        Ok(publishers)
    }

    /// Stops sending, within a bounded time. The tracks go with the room's leave.
    pub(crate) async fn stop(self) {
        let Self { video, audio } = self;
        let video = async {
            if let Some(video) = video {
                video.stop("video").await;
            }
        };
        let audio = async {
            if let Some(audio) = audio {
                audio.stop("audio").await;
            }
        };
        tokio::join!(video, audio);
    }
}
