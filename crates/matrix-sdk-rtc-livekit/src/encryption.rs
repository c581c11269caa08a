//! Media encryption of one connection, as Element Call does it in encrypted rooms: LiveKit's
//! frame encryption with per-participant keys that the MatrixRTC key exchange distributes.

use std::sync::Arc;
use std::time::Duration;

use livekit_str0m::FrameCryptor;
use livekit_str0m::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};
use matrix_sdk::Room;
use matrix_sdk_rtc::CallState;
use matrix_sdk_rtc::media_keys::{MediaKey, MediaKeyExchange, MediaKeySink, OwnMember};
use tokio::sync::watch;

/// How the connector handles media encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MediaEncryption {
    /// Never encrypt; encrypted tracks of others are not decoded.
    #[default]
    Off,
    /// As Element Call: in a room with Matrix encryption, per-participant keys exchanged over
    /// Matrix and LiveKit's frame encryption; in other rooms none.
    PerParticipant,
}

/// Hands keys from the exchange to the frame cryptor's key provider.
struct ProviderSink(Arc<KeyProvider>);

impl MediaKeySink for ProviderSink {
    fn set_key(&self, identity: &str, index: u8, key: &MediaKey) {
        if let Err(error) = self.0.set_key(identity, index, key.expose()) {
            tracing::debug!(%identity, %error, "a media key did not fit the key ring");
        }
    }
}

/// The keys and the exchange of one encrypted connection.
#[derive(Debug)]
pub(crate) struct CallEncryption {
    cryptor: Arc<GcmFrameCryptor>,
    exchange: Arc<MediaKeyExchange>,
}

impl CallEncryption {
    /// Starts exchanging keys in `room`'s call as `own`.
    pub(crate) fn start(
        room: &Room,
        own: OwnMember,
        call: watch::Receiver<CallState>,
        resend: Option<Duration>,
    ) -> Self {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
        let sink = Arc::new(ProviderSink(keys.clone()));
        let exchange = MediaKeyExchange::start_with_resend(room, own, call, sink, resend);
        Self { cryptor: Arc::new(GcmFrameCryptor::new(keys)), exchange: Arc::new(exchange) }
    }

    /// The frame cryptor for every LiveKit room of the connection.
    pub(crate) fn cryptor(&self) -> Arc<dyn FrameCryptor> {
        self.cryptor.clone()
    }

    /// The exchange, to tell it of (re)connected participants.
    pub(crate) fn exchange(&self) -> Arc<MediaKeyExchange> {
        self.exchange.clone()
    }
}
