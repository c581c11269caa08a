//! The outbound policy against the real service: server names resolving to each refused range,
//! a `.well-known` delegation to loopback, a name whose DNS answer changes between two lookups,
//! each refused with no connection made; a public address still verified.
//!
//! The test runs in a network namespace of its own (it needs root, as the chaos suite does):
//! there, loopback carries a public address (`1.2.3.4`) and one address of each private range,
//! and a fake homeserver listens on every address (HTTPS on ports 443 and 8448) and records each
//! connection it accepts. Names resolve through a test resolver.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use common::{post, raw_config, spawn_configured};
use matrixrtc_auth::config::{Config, SKIP_VERIFY_TLS_CONSENT};
use matrixrtc_auth::outbound::{HostResolver, Lookup};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

/// The public address loopback carries in the namespace.
const PUBLIC: &str = "1.2.3.4";
/// One address of each range the default policy refuses that a listener can accept on.
const INTERNAL: [(&str, &str); 7] = [
    ("private-10", "10.1.2.3"),
    ("private-172", "172.16.5.5"),
    ("private-192", "192.168.7.7"),
    ("cgnat", "100.64.1.1"),
    ("metadata", "169.254.169.254"),
    ("unique-local", "fd00::7"),
    ("loopback", "127.0.0.1"),
];

/// Names resolve to what the test says; a name given several answers gives them in turn (the
/// last one again and again).
#[derive(Debug, Default)]
struct TestResolver {
    answers: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
    lookups: Mutex<Vec<String>>,
}

impl TestResolver {
    fn set(&self, name: &str, answers: &[&[&str]]) {
        let answers = answers.iter().map(|a| a.iter().map(|ip| ip.parse().unwrap()).collect());
        self.answers.lock().unwrap().insert(name.to_owned(), answers.collect());
    }

    fn lookups_of(&self, name: &str) -> usize {
        self.lookups.lock().unwrap().iter().filter(|n| *n == name).count()
    }
}

impl HostResolver for TestResolver {
    fn lookup(self: Arc<Self>, host: String) -> Lookup {
        Box::pin(async move {
            self.lookups.lock().unwrap().push(host.clone());
            let mut answers = self.answers.lock().unwrap();
            let queue = answers.get_mut(&host).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host}: no answer"))
            })?;
            Ok(if queue.len() > 1 { queue.remove(0) } else { queue[0].clone() })
        })
    }
}

/// The fake homeserver: HTTPS on every address of the namespace, ports 443 and 8448. It answers
/// `.well-known/matrix/server` with `delegations[host]` (404 for others) and vouches for
/// `@alice:{Host header}` on userinfo. Every accepted connection's local address is recorded.
#[derive(Debug, Default)]
struct FakeHomeserver {
    accepted: Mutex<Vec<SocketAddr>>,
    delegations: Mutex<HashMap<String, String>>,
}

impl FakeHomeserver {
    async fn start(self: &Arc<Self>) {
        let tls = tls_acceptor();
        for port in [443, 8448] {
            // `[::]` accepts IPv4 too (IPv4-mapped), so one listener sees every address.
            let listener = TcpListener::bind(("::", port)).await.expect("bind the fake homeserver");
            let (this, tls) = (Arc::clone(self), tls.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else { return };
                    let local = socket.local_addr().unwrap();
                    this.accepted.lock().unwrap().push(local);
                    let (this, tls) = (Arc::clone(&this), tls.clone());
                    tokio::spawn(async move {
                        if let Ok(stream) = tls.accept(socket).await {
                            this.answer(stream).await;
                        }
                    });
                }
            });
        }
    }

    async fn answer(&self, mut stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buffer[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request);
        let path = text.split_whitespace().nth(1).unwrap_or("");
        let host = text
            .lines()
            .find_map(|l| l.strip_prefix("host: ").or_else(|| l.strip_prefix("Host: ")))
            .unwrap_or("")
            .trim()
            .to_owned();
        let (status, body) = if path == "/.well-known/matrix/server" {
            let name = host.split(':').next().unwrap_or("");
            match self.delegations.lock().unwrap().get(name) {
                Some(server) => ("200 OK", json!({ "m.server": server }).to_string()),
                None => ("404 Not Found", "{}".to_owned()),
            }
        } else if path.starts_with("/_matrix/federation/v1/openid/userinfo") {
            ("200 OK", json!({ "sub": format!("@alice:{host}") }).to_string())
        } else {
            ("404 Not Found", "{}".to_owned())
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes()).await;
        let _ = stream.shutdown().await;
    }

    fn accepted(&self) -> Vec<SocketAddr> {
        self.accepted.lock().unwrap().clone()
    }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![
        CertificateDer::from_pem_slice(include_bytes!("vectors/homeserver.test.crt")).unwrap(),
    ];
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("vectors/homeserver.test.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Moves this thread into a new network namespace whose loopback carries `addresses`.
fn enter_network_namespace(addresses: &[&str]) {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| {
        panic!("this test needs its own network namespace (run it as root): unshare: {e}")
    });
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip").args(args).status().expect("run ip");
        assert!(status.success(), "ip {args:?}: {status}");
    };
    ip(&["link", "set", "lo", "up"]);
    for address in addresses {
        let prefix = if address.contains(':') { "/128" } else { "/32" };
        ip(&["addr", "add", &format!("{address}{prefix}"), "dev", "lo"]);
    }
}

fn request(server_name: &str) -> String {
    json!({
        "room": "!room:example.test", "device_id": "DEV",
        "openid_token": {"access_token": "tok", "token_type": "Bearer", "matrix_server_name": server_name, "expires_in": 3600},
    })
    .to_string()
}

#[test]
fn the_service_connects_to_public_addresses_only() {
    let mut addresses = vec![PUBLIC];
    addresses.extend(INTERNAL.iter().map(|(_, a)| *a).filter(|a| *a != "127.0.0.1"));
    enter_network_namespace(&addresses);
    // The runtime's threads are started from this one: they are in the namespace too.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(scenarios());
}

async fn scenarios() {
    let homeserver = Arc::new(FakeHomeserver::default());
    homeserver.start().await;
    let resolver = Arc::new(TestResolver::default());
    let mut raw =
        raw_config("ws://127.0.0.1:9", "key", "secret-secret-secret-secret-secret", "nobody.test");
    raw.outbound_allow = Vec::new();
    raw.outbound_timeout_ms = 5_000;
    raw.insecure_skip_verify_tls = Some(SKIP_VERIFY_TLS_CONSENT.into());
    let mut config = Config::from_raw(raw).unwrap();
    config.outbound.resolver = Arc::clone(&resolver) as Arc<dyn HostResolver>;
    let service = spawn_configured(config).await;
    let sfu_get = format!("{service}/sfu/get");

    // A public address is verified (and the fake homeserver can be reached at all).
    resolver.set("public.test", &[&[PUBLIC]]);
    let answer = post(&sfu_get, request("public.test:8448")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let public = homeserver.accepted();
    assert_eq!(public.len(), 1, "{public:?}");
    assert_eq!(public[0].ip().to_canonical().to_string(), PUBLIC);

    // Names resolving to each refused range, and IP literals of them: a 401 like any failed
    // verification, and no connection.
    let mut refused = Vec::new();
    for (name, address) in INTERNAL {
        resolver.set(&format!("{name}.test"), &[&[address]]);
        refused.push(format!("{name}.test:8448"));
        refused.push(if address.contains(':') {
            format!("[{address}]:8448")
        } else {
            format!("{address}:8448")
        });
    }
    for (name, address) in [
        ("mapped", "::ffff:10.1.2.3"),
        ("mapped-loopback", "::ffff:127.0.0.1"),
        ("nat64-metadata", "64:ff9b::a9fe:a9fe"),
        ("unspecified", "0.0.0.0"),
        ("unspecified-v6", "::"),
        ("multicast", "224.0.0.1"),
    ] {
        resolver.set(&format!("{name}.test"), &[&[address]]);
        refused.push(format!("{name}.test:8448"));
    }
    refused.push("[::ffff:169.254.169.254]:8448".into());
    for server_name in &refused {
        let answer = post(&sfu_get, request(server_name)).await;
        assert_eq!(
            (answer.status.as_u16(), answer.errcode(), answer.body["error"].as_str()),
            (401, "M_UNAUTHORIZED", Some("The request could not be authorised.")),
            "{server_name}"
        );
    }
    assert_eq!(homeserver.accepted(), public, "a refused address was connected to");

    // A name with a public and an internal address: only the public one is used.
    resolver.set("mixed.test", &[&["169.254.169.254", PUBLIC]]);
    let answer = post(&sfu_get, request("mixed.test:8448")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let accepted = homeserver.accepted();
    assert!(accepted[public.len()..].iter().all(|a| a.ip().to_canonical().to_string() == PUBLIC));

    // `.well-known` delegation to loopback (the `.well-known` itself is on a public address):
    // refused, and loopback sees no connection.
    resolver.set("delegating.test", &[&[PUBLIC]]);
    homeserver
        .delegations
        .lock()
        .unwrap()
        .insert("delegating.test".into(), "127.0.0.1:8448".into());
    let before = homeserver.accepted().len();
    let answer = post(&sfu_get, request("delegating.test")).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (401, "M_UNAUTHORIZED"));
    let after = homeserver.accepted();
    assert_eq!(after.len(), before + 1, "only the .well-known lookup connects: {after:?}");
    assert_eq!(after[before].ip().to_canonical().to_string(), PUBLIC);
    assert_eq!(after[before].port(), 443);
    // Delegation to a name that resolves inside: refused the same way.
    resolver.set("inside.test", &[&["10.1.2.3"]]);
    homeserver.delegations.lock().unwrap().insert("delegating2.test".into(), "inside.test".into());
    resolver.set("delegating2.test", &[&[PUBLIC]]);
    let answer = post(&sfu_get, request("delegating2.test")).await;
    assert_eq!(answer.status, 401);
    assert!(homeserver.accepted()[after.len()..].iter().all(|a| a.port() == 443));

    // DNS rebinding: the first answer (for `.well-known`) is public, the second (for the
    // userinfo request on 8448) is loopback. The connection uses the answer that was checked.
    resolver.set("rebind.test", &[&[PUBLIC], &["127.0.0.1"]]);
    let before = homeserver.accepted().len();
    let answer = post(&sfu_get, request("rebind.test")).await;
    assert_eq!((answer.status.as_u16(), answer.errcode()), (401, "M_UNAUTHORIZED"));
    assert_eq!(resolver.lookups_of("rebind.test"), 2, "both lookups were made");
    let after = homeserver.accepted();
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert_eq!(
        (after[before].ip().to_canonical().to_string(), after[before].port()),
        (PUBLIC.into(), 443)
    );

    // With the address allowed by the operator, the same loopback name verifies.
    let mut raw =
        raw_config("ws://127.0.0.1:9", "key", "secret-secret-secret-secret-secret", "nobody.test");
    raw.outbound_allow = vec!["127.0.0.1".into()];
    raw.insecure_skip_verify_tls = Some(SKIP_VERIFY_TLS_CONSENT.into());
    let mut config = Config::from_raw(raw).unwrap();
    config.outbound.resolver = Arc::clone(&resolver) as Arc<dyn HostResolver>;
    let allowing = spawn_configured(config).await;
    let answer = post(&format!("{allowing}/sfu/get"), request("loopback.test:8448")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let last = *homeserver.accepted().last().unwrap();
    assert_eq!(last.ip().to_canonical().to_string(), "127.0.0.1");
}
