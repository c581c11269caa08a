//! DTLS for the peer connections of this process: str0m's own backend (dimpl on aws-lc-rs), with
//! one certificate and one DTLS configuration made once and shared by every connection.
//!
//! Building a dimpl configuration validates its crypto provider with trial key exchanges (P-256,
//! P-384, X25519) and signatures; str0m's provider does that for each connection, which made up
//! most of the cost of creating one (two per session). The configuration holds only settings
//! (no keys, no random state), so one serves every connection.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// The crypto of every peer connection: str0m's aws-lc-rs provider with [`SharedConfigDtls`] for
/// DTLS.
pub(super) fn crypto_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DTLS: SharedConfigDtls = SharedConfigDtls { config: OnceLock::new() };
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider { dtls_provider: &DTLS, ..str0m::crypto::from_feature_flags() })
        })
        .clone()
}

/// The DTLS certificate of every peer connection of this process, made once: generating a key
/// pair per connection costs time and memory for no gain (browsers keep one per origin too; the
/// fingerprint travels in the SDP, which the signalling connection protects). `None` when the
/// crypto provider cannot make one; each connection then makes its own.
pub(super) fn process_dtls_cert() -> Option<&'static DtlsCert> {
    static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| str0m::crypto::from_feature_flags().dtls_provider.generate_certificate())
        .as_ref()
}

/// dimpl's DTLS with the settings str0m gives it (no server cookie: ICE has checked the return
/// path), its configuration built and validated once.
#[derive(Debug)]
struct SharedConfigDtls {
    /// The configuration for the MTU of the first connection (str0m passes the same one to all
    /// of ours).
    config: OnceLock<(Option<usize>, Arc<dimpl::Config>)>,
}

impl SharedConfigDtls {
    /// A new configuration for `mtu`.
    fn build(mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        builder
            .build()
            .map(Arc::new)
            .map_err(|e| CryptoError::Other(format!("dimpl config creation failed: {e}")))
    }

    /// The shared configuration when it is for `mtu`, else a new one.
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        if let Some((shared_mtu, config)) = self.config.get() {
            if *shared_mtu == mtu {
                return Ok(config.clone());
            }
            return Self::build(mtu);
        }
        let config = Self::build(mtu)?;
        // Another connection may have set it first, for another MTU.
        let (shared_mtu, shared) = self.config.get_or_init(|| (mtu, config.clone()));
        Ok(if *shared_mtu == mtu { shared.clone() } else { config })
    }
}

impl DtlsProvider for SharedConfigDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        process_dtls_cert().cloned()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!("unsupported DTLS version: {other}")));
            }
        };
        Ok(Box::new(Instance(dtls)))
    }
}

/// One connection's DTLS.
struct Instance(dimpl::Dtls);

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}
