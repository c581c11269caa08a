//! Configuration: the environment variables of element-hq/lk-jwt-service, each also a flag.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::limits::{LimitsConfig, Rate};
use crate::outbound::{ALLOW_SETTING, Outbound, OutboundPolicy};
use crate::secret::Secret;

/// The value `LIVEKIT_INSECURE_SKIP_VERIFY_TLS` must have to turn certificate checks off.
pub const SKIP_VERIFY_TLS_CONSENT: &str = "YES_I_KNOW_WHAT_I_AM_DOING";

/// The default of `LIVEKIT_SANITY_CHECK_INTERVAL_SECONDS`.
pub const DEFAULT_SANITY_CHECK_INTERVAL_SECONDS: u64 = 30;

/// Configuration as given on the command line or in the environment, before validation.
#[derive(Debug, Default, Clone, clap::Args)]
#[non_exhaustive]
pub struct RawConfig {
    /// LiveKit SFU WebSocket URL handed to clients and used for the server API.
    #[arg(long, env = "LIVEKIT_URL")]
    pub livekit_url: Option<String>,
    /// LiveKit API key.
    #[arg(long, env = "LIVEKIT_KEY")]
    pub livekit_key: Option<String>,
    /// File holding the LiveKit API key.
    #[arg(long, env = "LIVEKIT_KEY_FROM_FILE")]
    pub livekit_key_from_file: Option<PathBuf>,
    /// LiveKit API secret (prefer the environment or a file: flags show in process lists).
    #[arg(long, env = "LIVEKIT_SECRET", hide_env_values = true)]
    pub livekit_secret: Option<Secret>,
    /// File holding the LiveKit API secret.
    #[arg(long, env = "LIVEKIT_SECRET_FROM_FILE")]
    pub livekit_secret_from_file: Option<PathBuf>,
    /// File holding `key:secret`; takes precedence over the other key and secret settings.
    #[arg(long, env = "LIVEKIT_KEY_FILE")]
    pub livekit_key_file: Option<PathBuf>,
    /// Comma-separated server names whose users may create LiveKit rooms, or `*` for all.
    #[arg(long, env = "LIVEKIT_FULL_ACCESS_HOMESERVERS")]
    pub full_access_homeservers: Option<String>,
    /// Listen address: `host:port`, or `:port` for all interfaces. Default `:8080`.
    #[arg(long, env = "LIVEKIT_JWT_BIND")]
    pub bind: Option<String>,
    /// Deprecated: listen port on all interfaces; use `--bind`.
    #[arg(long, env = "LIVEKIT_JWT_PORT", hide = true)]
    pub port: Option<u16>,
    /// Federation base URL overrides, `server_name=url`, comma-separated (or repeat the flag),
    /// for homeservers that server discovery cannot reach (loopback, private DNS).
    #[arg(
        long = "federation-override",
        env = "MATRIXRTC_AUTH_FEDERATION_OVERRIDES",
        value_delimiter = ','
    )]
    pub federation_overrides: Vec<String>,
    /// Client-server API base URL overrides, `server_name=url`, comma-separated (or repeat the
    /// flag), used to restart and send delegated delayed leaves on homeservers whose
    /// `.well-known/matrix/client` cannot be reached.
    #[arg(
        long = "cs-api-url-override",
        env = "LIVEKIT_CS_API_URL_OVERRIDES",
        value_delimiter = ','
    )]
    pub cs_api_url_overrides: Vec<String>,
    /// Take delegated delayed leaves over (`/delegate_delayed_leave` and the delay fields of the
    /// token routes): `true` (default) or `false`, which answers `/delegate_delayed_leave` with
    /// 404 and ignores the fields.
    #[arg(long, env = "MATRIXRTC_AUTH_DELEGATION", action = clap::ArgAction::Set)]
    pub delegation: Option<bool>,
    /// How often a member whose leave is delegated is looked up on the SFU, in seconds, besides
    /// LiveKit's webhooks (which may be lost); 0 turns the check off. Default 30.
    #[arg(long, env = "LIVEKIT_SANITY_CHECK_INTERVAL_SECONDS")]
    pub sanity_check_interval_seconds: Option<u64>,
    /// Timeout of every outbound request (homeserver, LiveKit), in milliseconds.
    #[arg(long, env = "MATRIXRTC_AUTH_OUTBOUND_TIMEOUT_MS", default_value_t = 10_000)]
    pub outbound_timeout_ms: u64,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "MATRIXRTC_AUTH_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Networks homeservers may be reached at besides public unicast addresses, comma-separated
    /// (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`). Loopback, private, link-local, CGNAT, multicast
    /// and other special addresses are refused otherwise.
    #[arg(long = "outbound-allow", env = "MATRIXRTC_AUTH_OUTBOUND_ALLOW", value_delimiter = ',')]
    pub outbound_allow: Vec<String>,
    /// Reverse proxies in front of the service, comma-separated networks: for requests from
    /// them, the client is taken from `X-Forwarded-For`.
    #[arg(long = "trusted-proxy", env = "MATRIXRTC_AUTH_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Token requests a minute per client address (IPv6: per /64); 0 turns the limit off.
    /// Default 60.
    #[arg(long, env = "MATRIXRTC_AUTH_CLIENT_RATE_PER_MINUTE")]
    pub client_rate_per_minute: Option<u32>,
    /// Token requests a client address may make at once. Default 30.
    #[arg(long, env = "MATRIXRTC_AUTH_CLIENT_BURST")]
    pub client_burst: Option<u32>,
    /// OpenID verifications a minute per homeserver (answers from the verification cache do not
    /// count); 0 turns the limit off. Default 600.
    #[arg(long, env = "MATRIXRTC_AUTH_HOMESERVER_RATE_PER_MINUTE")]
    pub homeserver_rate_per_minute: Option<u32>,
    /// OpenID verifications a homeserver may get at once. Default 100.
    #[arg(long, env = "MATRIXRTC_AUTH_HOMESERVER_BURST")]
    pub homeserver_burst: Option<u32>,
    /// OpenID verifications running at once, over all homeservers. Default 32.
    #[arg(long, env = "MATRIXRTC_AUTH_MAX_CONCURRENT_VERIFICATIONS")]
    pub max_concurrent_verifications: Option<usize>,
    /// How long a successful OpenID verification is remembered, in seconds; 0 turns the cache
    /// off. Default 60.
    #[arg(long, env = "MATRIXRTC_AUTH_VERIFICATION_CACHE_SECONDS")]
    pub verification_cache_seconds: Option<u64>,
    /// Set to `YES_I_KNOW_WHAT_I_AM_DOING` to skip TLS certificate checks (tests only).
    #[arg(long, env = "LIVEKIT_INSECURE_SKIP_VERIFY_TLS")]
    pub insecure_skip_verify_tls: Option<String>,
}

/// Which homeservers' users get full access (room creation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullAccess {
    /// Every homeserver (`*`).
    All,
    /// Only these server names.
    Only(HashSet<String>),
}

impl FullAccess {
    /// Whether users of `server_name` have full access.
    pub fn allows(&self, server_name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(server_name),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The LiveKit URL returned to clients, verbatim as configured.
    pub livekit_url: String,
    /// The LiveKit API key.
    pub livekit_key: String,
    /// The LiveKit API secret.
    pub livekit_secret: Secret,
    /// Full-access homeservers.
    pub full_access: FullAccess,
    /// Listen address.
    pub bind: SocketAddr,
    /// Federation base URL per server name.
    pub federation_overrides: HashMap<String, Url>,
    /// Client-server API base URL per server name.
    pub cs_api_url_overrides: HashMap<String, Url>,
    /// Whether delegated delayed leaves are taken over.
    pub delegation: bool,
    /// How often members whose leave is delegated are looked up on the SFU (`None`: never).
    pub sanity_check_interval: Option<Duration>,
    /// Timeout of every outbound request.
    pub outbound_timeout: Duration,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Skip TLS certificate checks on outbound requests.
    pub accept_invalid_certs: bool,
    /// Where requests to homeservers may go, and how names are resolved.
    pub outbound: Outbound,
    /// Rate limits, the cap on concurrent verifications and the verification cache.
    pub limits: LimitsConfig,
}

/// An invalid configuration; the message names the variable or flag to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("{0} must be set")]
    Missing(&'static str),
    /// A setting has an invalid value.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file named by a setting could not be read.
    #[error("cannot read {name} file {path}: {source}")]
    File {
        /// The variable.
        name: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.into() }
}

fn read_file(name: &'static str, path: &PathBuf) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::File {
        name,
        path: path.clone(),
        source,
    })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim_matches([' ', '\r', '\n']).to_owned()).filter(|v| !v.is_empty())
}

impl Config {
    /// Validates a raw configuration, reading the key and secret files it names.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let (key, secret) = if let Some(path) = &raw.livekit_key_file {
            let content = read_file("LIVEKIT_KEY_FILE", path)?;
            let (key, secret) = content
                .split_once(':')
                .filter(|(_, s)| !s.contains(':'))
                .ok_or_else(|| invalid("LIVEKIT_KEY_FILE", "expected the format key:secret"))?;
            (Some(key.to_owned()), Some(secret.to_owned()))
        } else {
            let key = match &raw.livekit_key_from_file {
                Some(path) => Some(read_file("LIVEKIT_KEY_FROM_FILE", path)?),
                None => raw.livekit_key.clone(),
            };
            let secret = match &raw.livekit_secret_from_file {
                Some(path) => Some(read_file("LIVEKIT_SECRET_FROM_FILE", path)?),
                None => raw.livekit_secret.as_ref().map(|s| s.expose().to_owned()),
            };
            (key, secret)
        };
        let livekit_key = non_empty(key).ok_or(ConfigError::Missing("LIVEKIT_KEY"))?;
        let livekit_secret =
            Secret::new(non_empty(secret).ok_or(ConfigError::Missing("LIVEKIT_SECRET"))?);

        let url = non_empty(raw.livekit_url).ok_or(ConfigError::Missing("LIVEKIT_URL"))?;
        let parsed = Url::parse(&url).map_err(|e| invalid("LIVEKIT_URL", e.to_string()))?;
        if !matches!(parsed.scheme(), "ws" | "wss" | "http" | "https") {
            return Err(invalid("LIVEKIT_URL", "the scheme must be ws, wss, http or https"));
        }
        let livekit_url = url;

        let full = non_empty(raw.full_access_homeservers)
            .ok_or(ConfigError::Missing("LIVEKIT_FULL_ACCESS_HOMESERVERS"))?;
        let names: HashSet<String> =
            full.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let full_access = if names.len() == 1 && names.contains("*") {
            FullAccess::All
        } else if names.is_empty() || names.contains("*") {
            return Err(invalid(
                "LIVEKIT_FULL_ACCESS_HOMESERVERS",
                "expected a comma-separated list of server names, or `*` alone",
            ));
        } else {
            FullAccess::Only(names)
        };

        let bind = match (non_empty(raw.bind), raw.port) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "LIVEKIT_JWT_BIND",
                    "must not be set together with LIVEKIT_JWT_PORT",
                ));
            }
            (Some(bind), None) => parse_bind(&bind)?,
            (None, Some(port)) => {
                tracing::warn!("LIVEKIT_JWT_PORT is deprecated, use LIVEKIT_JWT_BIND");
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
            }
            (None, None) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080)),
        };

        let federation_overrides =
            parse_overrides("MATRIXRTC_AUTH_FEDERATION_OVERRIDES", &raw.federation_overrides)?;
        let cs_api_url_overrides =
            parse_overrides("LIVEKIT_CS_API_URL_OVERRIDES", &raw.cs_api_url_overrides)?;

        let policy = OutboundPolicy::allowing(parse_networks(ALLOW_SETTING, &raw.outbound_allow)?);
        check_override_hosts(
            &policy,
            "MATRIXRTC_AUTH_FEDERATION_OVERRIDES",
            &federation_overrides,
        )?;
        check_override_hosts(&policy, "LIVEKIT_CS_API_URL_OVERRIDES", &cs_api_url_overrides)?;
        let defaults = LimitsConfig::default();
        let limits = LimitsConfig {
            per_client: Rate {
                burst: raw.client_burst.unwrap_or(defaults.per_client.burst),
                per_minute: raw.client_rate_per_minute.unwrap_or(defaults.per_client.per_minute),
            },
            per_homeserver: Rate {
                burst: raw.homeserver_burst.unwrap_or(defaults.per_homeserver.burst),
                per_minute: raw
                    .homeserver_rate_per_minute
                    .unwrap_or(defaults.per_homeserver.per_minute),
            },
            max_concurrent_verifications: raw
                .max_concurrent_verifications
                .unwrap_or(defaults.max_concurrent_verifications),
            verification_cache_ttl: raw
                .verification_cache_seconds
                .map_or(defaults.verification_cache_ttl, Duration::from_secs),
            trusted_proxies: parse_networks(
                "MATRIXRTC_AUTH_TRUSTED_PROXIES",
                &raw.trusted_proxies,
            )?,
        };
        if limits.max_concurrent_verifications == 0 {
            return Err(invalid(
                "MATRIXRTC_AUTH_MAX_CONCURRENT_VERIFICATIONS",
                "must be greater than zero",
            ));
        }

        if raw.max_body_bytes == 0 {
            return Err(invalid("MATRIXRTC_AUTH_MAX_BODY_BYTES", "must be greater than zero"));
        }
        if raw.outbound_timeout_ms == 0 {
            return Err(invalid("MATRIXRTC_AUTH_OUTBOUND_TIMEOUT_MS", "must be greater than zero"));
        }

        Ok(Self {
            livekit_url,
            livekit_key,
            livekit_secret,
            full_access,
            bind,
            federation_overrides,
            cs_api_url_overrides,
            delegation: raw.delegation.unwrap_or(true),
            sanity_check_interval: Some(Duration::from_secs(
                raw.sanity_check_interval_seconds.unwrap_or(DEFAULT_SANITY_CHECK_INTERVAL_SECONDS),
            ))
            .filter(|i| !i.is_zero()),
            outbound_timeout: Duration::from_millis(raw.outbound_timeout_ms),
            max_body_bytes: raw.max_body_bytes,
            accept_invalid_certs: raw.insecure_skip_verify_tls.as_deref()
                == Some(SKIP_VERIFY_TLS_CONSENT),
            outbound: Outbound::new(policy),
            limits,
        })
    }
}

/// Parses `server_name=url` entries (http or https URLs) of the setting `name`.
fn parse_overrides(
    name: &'static str,
    entries: &[String],
) -> Result<HashMap<String, Url>, ConfigError> {
    let mut overrides = HashMap::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (server, url) = entry
            .split_once('=')
            .map(|(s, u)| (s.trim(), u.trim()))
            .filter(|(s, u)| !s.is_empty() && !u.is_empty())
            .ok_or_else(|| invalid(name, format!("entry {entry:?}: expected server_name=url")))?;
        let url = Url::parse(url).map_err(|e| invalid(name, format!("entry {entry:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(name, format!("entry {entry:?}: the URL must be http(s)")));
        }
        overrides.insert(server.to_owned(), url);
    }
    Ok(overrides)
}

/// Parses networks (`10.0.0.0/8`) and addresses (`127.0.0.1`, a network of one) of the setting
/// `name`.
fn parse_networks(
    name: &'static str,
    entries: &[String],
) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .map(|network| network.trunc())
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| invalid(name, format!("{entry:?} is not an address or a network")))
        })
        .collect()
}

/// An override whose host is an IP literal the outbound policy refuses would fail every
/// request: say so at start.
fn check_override_hosts(
    policy: &OutboundPolicy,
    name: &'static str,
    overrides: &HashMap<String, Url>,
) -> Result<(), ConfigError> {
    for (server, url) in overrides {
        let address = match url.host() {
            Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
            _ => continue,
        };
        if let Err(refused) = policy.check(address) {
            return Err(invalid(name, format!("the entry of {server}: {refused}")));
        }
    }
    Ok(())
}

/// Parses `host:port`, `[v6]:port` or Go's `:port` (all interfaces).
fn parse_bind(bind: &str) -> Result<SocketAddr, ConfigError> {
    let text = if bind.starts_with(':') { format!("0.0.0.0{bind}") } else { bind.to_owned() };
    text.parse().map_err(|_| invalid("LIVEKIT_JWT_BIND", format!("{bind:?} is not host:port")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawConfig {
        RawConfig {
            livekit_url: Some("ws://127.0.0.1:7880".into()),
            livekit_key: Some("devkey".into()),
            livekit_secret: Some(Secret::new("secret\n")),
            full_access_homeservers: Some("localhost, example.org".into()),
            outbound_timeout_ms: 1000,
            max_body_bytes: 1024,
            ..RawConfig::default()
        }
    }

    #[test]
    fn defaults_match_lk_jwt_service() {
        let config = Config::from_raw(raw()).unwrap();
        assert_eq!(config.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.livekit_secret.expose(), "secret");
        assert!(config.full_access.allows("example.org"));
        assert!(!config.full_access.allows("evil.org"));
        assert!(!config.accept_invalid_certs);
        assert!(config.delegation);
        assert_eq!(config.sanity_check_interval, Some(Duration::from_secs(30)));
        assert!(config.cs_api_url_overrides.is_empty());
        assert_eq!(config.outbound.policy, OutboundPolicy::public_only());
        assert_eq!(config.limits, LimitsConfig::default());
    }

    #[test]
    fn outbound_networks_limits_and_override_hosts() {
        let config = Config::from_raw(RawConfig {
            outbound_allow: vec!["127.0.0.1".into(), " 10.1.2.3/8".into(), "fd00::/8".into()],
            trusted_proxies: vec!["192.168.0.1".into()],
            client_rate_per_minute: Some(0),
            homeserver_burst: Some(7),
            verification_cache_seconds: Some(0),
            federation_overrides: vec!["a.test=http://10.9.9.9:8008".into()],
            ..raw()
        })
        .unwrap();
        let allowed: Vec<String> =
            config.outbound.policy.allowed().iter().map(ToString::to_string).collect();
        assert_eq!(allowed, ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]);
        assert_eq!(config.limits.trusted_proxies, ["192.168.0.1/32".parse().unwrap()]);
        assert!(config.limits.per_client.is_off());
        assert_eq!(config.limits.per_homeserver, Rate { burst: 7, per_minute: 600 });
        assert_eq!(config.limits.verification_cache_ttl, Duration::ZERO);

        let refused = Config::from_raw(RawConfig {
            federation_overrides: vec!["localhost=http://127.0.0.1:8008".into()],
            ..raw()
        })
        .unwrap_err()
        .to_string();
        assert!(
            refused.starts_with(
                "MATRIXRTC_AUTH_FEDERATION_OVERRIDES is invalid: the entry of localhost: \
                 127.0.0.1, a loopback address, which the outbound policy refuses (allow it with \
                 MATRIXRTC_AUTH_OUTBOUND_ALLOW)"
            ),
            "{refused}"
        );
        let bad =
            Config::from_raw(RawConfig { outbound_allow: vec!["10.0.0.0/33".into()], ..raw() });
        assert!(
            bad.unwrap_err().to_string().starts_with("MATRIXRTC_AUTH_OUTBOUND_ALLOW is invalid")
        );
    }

    #[test]
    fn wildcard_bind_port_and_overrides() {
        let config = Config::from_raw(RawConfig {
            full_access_homeservers: Some("*".into()),
            bind: Some("127.0.0.1:9".into()),
            federation_overrides: vec!["localhost=http://127.0.0.1:8008".into()],
            outbound_allow: vec!["127.0.0.1".into()],
            insecure_skip_verify_tls: Some(SKIP_VERIFY_TLS_CONSENT.into()),
            ..raw()
        })
        .unwrap();
        assert_eq!(config.full_access, FullAccess::All);
        assert_eq!(config.bind, "127.0.0.1:9".parse().unwrap());
        assert_eq!(config.federation_overrides["localhost"].as_str(), "http://127.0.0.1:8008/");
        assert!(config.accept_invalid_certs);
        let port = Config::from_raw(RawConfig { port: Some(81), ..raw() }).unwrap();
        assert_eq!(port.bind, "0.0.0.0:81".parse().unwrap());
    }

    #[test]
    fn reads_key_file() {
        let dir =
            std::env::temp_dir().join(format!("matrixrtc-auth-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, "filekey:filesecret\n").unwrap();
        let config = Config::from_raw(RawConfig { livekit_key_file: Some(path), ..raw() }).unwrap();
        assert_eq!(
            (config.livekit_key.as_str(), config.livekit_secret.expose()),
            ("filekey", "filesecret")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: Vec<(RawConfig, &str)> = vec![
            (RawConfig { livekit_url: None, ..raw() }, "LIVEKIT_URL must be set"),
            (
                RawConfig { livekit_secret: Some(Secret::new("  ")), ..raw() },
                "LIVEKIT_SECRET must be set",
            ),
            (
                RawConfig { full_access_homeservers: None, ..raw() },
                "LIVEKIT_FULL_ACCESS_HOMESERVERS must be set",
            ),
            (
                RawConfig { full_access_homeservers: Some("*,a".into()), ..raw() },
                "LIVEKIT_FULL_ACCESS_HOMESERVERS is invalid",
            ),
            (RawConfig { livekit_url: Some("ftp://x".into()), ..raw() }, "LIVEKIT_URL is invalid"),
            (RawConfig { bind: Some("nope".into()), ..raw() }, "LIVEKIT_JWT_BIND is invalid"),
            (
                RawConfig { bind: Some(":1".into()), port: Some(2), ..raw() },
                "LIVEKIT_JWT_BIND is invalid",
            ),
            (
                RawConfig { federation_overrides: vec!["x".into()], ..raw() },
                "MATRIXRTC_AUTH_FEDERATION_OVERRIDES is invalid",
            ),
            (
                RawConfig { cs_api_url_overrides: vec!["x=ftp://y".into()], ..raw() },
                "LIVEKIT_CS_API_URL_OVERRIDES is invalid",
            ),
            (
                RawConfig { livekit_key_file: Some("/nonexistent/k".into()), ..raw() },
                "cannot read LIVEKIT_KEY_FILE",
            ),
        ];
        for (raw, expected) in cases {
            let error = Config::from_raw(raw).unwrap_err().to_string();
            assert!(error.starts_with(expected), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
