//! An open signalling connection split in two: the connection task reads, a small writer task
//! sends. Sending never makes the connection task wait: a request is queued, and a server (or
//! a proxy) that stops reading makes a write miss its deadline or the queue outgrow its byte
//! bound, which breaks the link (and the session resumes on a new one) instead of freezing
//! media and timers. A burst (a resumed session's held requests) fits easily.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use livekit_protocol::{SignalRequest, signal_request};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::{Incoming, WebSocket, decode};

/// Bytes of requests waiting for the socket; more means the server is not reading.
const MAX_QUEUED_BYTES: usize = 1 << 20;
/// How long one WebSocket write may take.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a polite close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

enum Outgoing {
    Request(Vec<u8>),
    Close,
}

/// The two halves of an open signalling connection.
pub(crate) struct SignalLink {
    reader: SplitStream<WebSocket>,
    writer: mpsc::UnboundedSender<Outgoing>,
    /// Bytes queued for the writer and not written yet.
    queued: Arc<AtomicUsize>,
    /// Why the writer gave up, once it did.
    writer_failed: oneshot::Receiver<String>,
    writer_task: Option<JoinHandle<()>>,
}

impl SignalLink {
    pub(super) fn new(ws: WebSocket) -> Self {
        let (sink, reader) = ws.split();
        let (writer, queue) = mpsc::unbounded_channel();
        let (failed_tx, writer_failed) = oneshot::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer_task = tokio::spawn(write_loop(sink, queue, queued.clone(), failed_tx));
        Self { reader, writer, queued, writer_failed, writer_task: Some(writer_task) }
    }

    /// Queues a request; an error (too much waits unsent, or the writer failed) means the link
    /// is broken.
    pub(crate) fn send(&self, message: signal_request::Message) -> Result<(), String> {
        let bytes = SignalRequest { message: Some(message) }.encode_to_vec();
        let queued = self.queued.fetch_add(bytes.len(), Ordering::AcqRel) + bytes.len();
        if queued > MAX_QUEUED_BYTES {
            return Err(format!(
                "{queued} bytes of signal requests wait unsent: the server is not reading"
            ));
        }
        self.writer
            .send(Outgoing::Request(bytes))
            .map_err(|_| "the signal writer stopped".to_owned())
    }

    /// The next message; `Closed` also when the writer failed.
    pub(crate) async fn recv(&mut self) -> Incoming {
        loop {
            tokio::select! {
                frame = self.reader.next() => {
                    if let Some(incoming) = decode(frame) {
                        return incoming;
                    }
                }
                failed = &mut self.writer_failed => {
                    let reason = failed.unwrap_or_else(|_| "the signal writer stopped".into());
                    // Report it once; then read on until the server closes.
                    self.writer_failed = oneshot::channel().1;
                    return Incoming::Closed(reason);
                }
            }
        }
    }

    /// Sends what is queued and a close frame, then reads until the server closes too (a
    /// socket closed with unread data is reset, and the server may drop what it had not read
    /// yet: our `leave`). Within a short time, whatever the server does.
    pub(crate) async fn close(mut self) {
        let writer_task = self.writer_task.take();
        let closing = async {
            let _ = self.writer.send(Outgoing::Close);
            while let Some(Ok(_)) = self.reader.next().await {}
            if let Some(task) = writer_task {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
}

impl Drop for SignalLink {
    fn drop(&mut self) {
        // A link dropped without `close` is broken: stop writing at once.
        if let Some(task) = self.writer_task.take() {
            task.abort();
        }
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
    failed: oneshot::Sender<String>,
) {
    while let Some(outgoing) = queue.recv().await {
        let (result, what) = match outgoing {
            Outgoing::Request(bytes) => {
                let len = bytes.len();
                let write = sink.send(Message::Binary(bytes.into()));
                let result = tokio::time::timeout(SEND_TIMEOUT, write).await;
                queued.fetch_sub(len, Ordering::AcqRel);
                (result, "send")
            }
            Outgoing::Close => (tokio::time::timeout(SEND_TIMEOUT, sink.close()).await, "close"),
        };
        let reason = match result {
            Ok(Ok(())) if what == "close" => return,
            Ok(Ok(())) => continue,
            Ok(Err(error)) => format!("signal {what} failed: {error}"),
            Err(_) => format!("a signal {what} took longer than {SEND_TIMEOUT:?}"),
        };
        let _ = failed.send(reason);
        return;
    }
}
