//! The local MatrixRTC stack: Synapse, the LiveKit server and matrixrtc-auth on 127.0.0.1, a
//! second LiveKit server with its own matrixrtc-auth (multi-SFU calls), and Element Call.
//!
//! Everything lives in `.devstack/` at the workspace root (git-ignored): the Synapse virtualenv,
//! the LiveKit server binary, each service's configuration, data and log, and `stack.json`, the
//! description that tests and the demo read.

mod element_call;
mod install;
mod livekit;
mod process;
mod services;
mod synapse;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rtc_test_support::{SecondSfu, StackInfo};

pub(crate) use self::services::{Service, kill as kill_service, restart as restart_service};

/// The Synapse version installed from PyPI.
pub(crate) const SYNAPSE_VERSION: &str = "1.163.2";
/// The LiveKit server version installed with `go install`: the newest that can be. From 1.13.6
/// on, the server's go.mod replaces pion's webrtc, dtls and ice with LiveKit forks, so `go install`
/// refuses it ("The go.mod file for the module providing named packages contains one or more
/// replace directives"), and the module proxy does not serve the forks to build it otherwise.
pub(crate) const LIVEKIT_VERSION: &str = "1.13.5";
/// The LiveKit API key of the stack.
const LIVEKIT_API_KEY: &str = "devkey";
/// The LiveKit API secret of the stack (32 characters or more, as the server wants).
const LIVEKIT_API_SECRET: &str = "devstack-secret-not-for-production-use";
/// Synapse's shared registration secret.
const REGISTRATION_SECRET: &str = "devstack-registration-shared-secret";
/// The homeserver's server name.
const SERVER_NAME: &str = "localhost";

/// Folders of the stack.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) workspace: PathBuf,
}

impl Layout {
    pub(crate) fn new() -> Self {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf();
        Self { root: workspace.join(".devstack"), workspace }
    }

    pub(crate) fn stack_file(&self) -> PathBuf {
        self.root.join("stack.json")
    }

    pub(crate) fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }

    pub(crate) fn service_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` of the workspace).
    pub(crate) fn target(&self) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.workspace.join("target"));
        if target.is_absolute() { target } else { self.workspace.join(target) }
    }
}

/// Installs the Debian packages the workspace needs to build (libvpx).
pub(crate) fn ensure_build_packages() -> anyhow::Result<()> {
    install::ensure_debian_packages(install::BUILD_PACKAGES)
}

pub(crate) use install::{apt_install, missing_debian_packages};

/// Installs the Debian packages the optional features need to build (libclang, OpenSSL).
pub(crate) fn ensure_feature_packages() -> anyhow::Result<()> {
    install::ensure_debian_packages(install::FEATURE_PACKAGES)
}

/// A virtualenv `.devstack/<name>` with `package==version` from PyPI (installed when missing);
/// returns its Python.
pub(crate) fn ensure_venv(
    layout: &Layout,
    name: &str,
    package: &str,
    version: &str,
) -> anyhow::Result<PathBuf> {
    install::ensure_venv(&layout.root.join(name), package, version)
}

/// Ports of one run of the stack.
#[derive(Debug, Clone, Copy)]
struct Ports {
    synapse: u16,
    auth: u16,
    livekit: u16,
    livekit_udp: u16,
    element_call: u16,
    livekit2: u16,
    livekit2_udp: u16,
    auth2: u16,
}

/// Starts the stack unless it is running already; returns its description.
pub(crate) async fn up() -> anyhow::Result<StackInfo> {
    let layout = Layout::new();
    if let Some(stack) = running_stack(&layout).await {
        eprintln!("the local stack is already running");
        return Ok(stack);
    }
    // A half-started or crashed stack: stop whatever is left before starting anew.
    stop_recorded(&layout)?;
    std::fs::create_dir_all(&layout.root)?;

    let started = Instant::now();
    let tools = install::ensure_installed(&layout).await?;
    let interop_layout = layout.clone();
    let chromium =
        tokio::task::spawn_blocking(move || element_call::ensure_installed(&interop_layout))
            .await??;
    eprintln!("installed in {:.1} s", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let ports = Ports {
        synapse: process::free_tcp_port()?,
        auth: process::free_tcp_port()?,
        livekit: process::free_tcp_port()?,
        livekit_udp: process::free_udp_port()?,
        element_call: process::free_tcp_port()?,
        livekit2: process::free_tcp_port()?,
        livekit2_udp: process::free_udp_port()?,
        auth2: process::free_tcp_port()?,
    };
    let homeserver_url = format!("http://127.0.0.1:{}", ports.synapse);
    let auth_url = format!("http://127.0.0.1:{}", ports.auth);
    let livekit_url = format!("ws://127.0.0.1:{}", ports.livekit);
    let mut stack = StackInfo {
        homeserver_url: homeserver_url.clone(),
        server_name: SERVER_NAME.to_owned(),
        registration_shared_secret: REGISTRATION_SECRET.to_owned(),
        livekit_url: livekit_url.clone(),
        livekit_api_key: LIVEKIT_API_KEY.to_owned(),
        livekit_api_secret: LIVEKIT_API_SECRET.to_owned(),
        livekit_udp_port: ports.livekit_udp,
        auth_service_url: auth_url.clone(),
        element_call_url: format!("http://127.0.0.1:{}", ports.element_call),
        chromium,
        interop_dir: layout.workspace.join("interop"),
        state_dir: layout.root.clone(),
        pids: Default::default(),
        second_sfu: Some(SecondSfu {
            livekit_url: format!("ws://127.0.0.1:{}", ports.livekit2),
            livekit_udp_port: ports.livekit2_udp,
            auth_service_url: format!("http://127.0.0.1:{}", ports.auth2),
        }),
    };
    let second = stack.second_sfu.clone().expect("set above");

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let result = async {
        // Synapse and LiveKit start in parallel; matrixrtc-auth needs neither to start.
        let synapse =
            synapse::start(&layout, &tools, &stack, ports.synapse, synapse::Start::Fresh)?;
        stack.pids.insert("synapse".into(), synapse);
        write_stack(&layout, &stack)?;
        let webhook = format!("{auth_url}/sfu_webhook");
        let sfu = livekit::Sfu {
            name: "livekit",
            port: ports.livekit,
            udp_port: ports.livekit_udp,
            webhook_url: &webhook,
        };
        let livekit = livekit::start(&layout, &tools, &stack, &sfu, true)?;
        stack.pids.insert("livekit".into(), livekit);
        write_stack(&layout, &stack)?;
        let auth =
            start_auth(&layout, &tools, &stack, "matrixrtc-auth", &stack.livekit_url, ports.auth)?;
        stack.pids.insert("matrixrtc-auth".into(), auth);
        write_stack(&layout, &stack)?;
        // A second SFU with its own authorization service: members who publish there are
        // reached through subscribe-only connections (Element Call's multi-SFU calls).
        let webhook2 = format!("{}/sfu_webhook", second.auth_service_url);
        let sfu2 = livekit::Sfu {
            name: "livekit2",
            port: ports.livekit2,
            udp_port: ports.livekit2_udp,
            webhook_url: &webhook2,
        };
        let livekit2 = livekit::start(&layout, &tools, &stack, &sfu2, true)?;
        stack.pids.insert("livekit2".into(), livekit2);
        write_stack(&layout, &stack)?;
        let auth2 = start_auth(
            &layout,
            &tools,
            &stack,
            "matrixrtc-auth2",
            &second.livekit_url,
            ports.auth2,
        )?;
        stack.pids.insert("matrixrtc-auth2".into(), auth2);
        write_stack(&layout, &stack)?;
        let element_call = element_call::start(&layout, &stack, ports.element_call)?;
        stack.pids.insert("element-call".into(), element_call);
        write_stack(&layout, &stack)?;

        let deadline = Duration::from_secs(90);
        let versions = format!("{homeserver_url}/_matrix/client/versions");
        let livekit_http = format!("http://127.0.0.1:{}/", ports.livekit);
        let healthz = format!("{auth_url}/healthz");
        let synapse_log = layout.service_dir("synapse").join("homeserver.log");
        let livekit_log = layout.service_dir("livekit").join("livekit.log");
        let auth_log = layout.service_dir("matrixrtc-auth").join("matrixrtc-auth.log");
        let element_call_log = layout.service_dir("element-call").join("server.log");
        let element_call_index = format!("{}/room", stack.element_call_url);
        let livekit2_http = format!("http://127.0.0.1:{}/", ports.livekit2);
        let healthz2 = format!("{}/healthz", second.auth_service_url);
        let livekit2_log = layout.service_dir("livekit2").join("livekit.log");
        let auth2_log = layout.service_dir("matrixrtc-auth2").join("matrixrtc-auth.log");
        let (l2, a2) = tokio::join!(
            process::wait_until_ready(
                &http,
                "livekit2",
                &livekit2_http,
                livekit2,
                deadline,
                &livekit2_log
            ),
            process::wait_until_ready(
                &http,
                "matrixrtc-auth2",
                &healthz2,
                auth2,
                deadline,
                &auth2_log
            ),
        );
        l2?;
        a2?;
        let (s, l, a, e) = tokio::join!(
            process::wait_until_ready(&http, "synapse", &versions, synapse, deadline, &synapse_log),
            process::wait_until_ready(
                &http,
                "livekit",
                &livekit_http,
                livekit,
                deadline,
                &livekit_log
            ),
            process::wait_until_ready(&http, "matrixrtc-auth", &healthz, auth, deadline, &auth_log),
            process::wait_until_ready(
                &http,
                "element-call",
                &element_call_index,
                element_call,
                deadline,
                &element_call_log
            ),
        );
        e?;
        s?;
        l?;
        a?;
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = result {
        let _ = stop_recorded(&layout);
        return Err(error.context("the local stack did not start"));
    }
    eprintln!("started in {:.1} s", started.elapsed().as_secs_f64());
    Ok(stack)
}

/// Starts an authorization service as service `name`, handing out tokens for `livekit_url`.
fn start_auth(
    layout: &Layout,
    tools: &install::Tools,
    stack: &StackInfo,
    name: &str,
    livekit_url: &str,
    port: u16,
) -> anyhow::Result<u32> {
    let dir = layout.service_dir(name);
    std::fs::create_dir_all(&dir)?;
    let mut command = std::process::Command::new(&tools.matrixrtc_auth);
    command
        .env("LIVEKIT_URL", livekit_url)
        .env("LIVEKIT_KEY", &stack.livekit_api_key)
        .env("LIVEKIT_SECRET", &stack.livekit_api_secret)
        .env("LIVEKIT_FULL_ACCESS_HOMESERVERS", &stack.server_name)
        .env("LIVEKIT_JWT_BIND", format!("127.0.0.1:{port}"))
        .env(
            "MATRIXRTC_AUTH_FEDERATION_OVERRIDES",
            format!("{}={}", stack.server_name, stack.homeserver_url),
        )
        // Synapse serves the client-server API on the same listener (delegated delayed leaves
        // are restarted and sent there).
        .env(
            "LIVEKIT_CS_API_URL_OVERRIDES",
            format!("{}={}", stack.server_name, stack.homeserver_url),
        )
        // The homeserver is on loopback, which the outbound policy refuses unless allowed.
        .env("MATRIXRTC_AUTH_OUTBOUND_ALLOW", "127.0.0.1")
        // Every test, browser and program of a test run comes from 127.0.0.1: ten times the
        // default per-client rate.
        .env("MATRIXRTC_AUTH_CLIENT_RATE_PER_MINUTE", "600")
        .env("MATRIXRTC_AUTH_CLIENT_BURST", "300")
        .env("RUST_LOG", "matrixrtc_auth=debug,info");
    process::spawn_detached(command, &dir.join("matrixrtc-auth.log"))
}

fn write_stack(layout: &Layout, stack: &StackInfo) -> anyhow::Result<()> {
    let path = layout.stack_file();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(stack)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

fn read_stack(layout: &Layout) -> Option<StackInfo> {
    let text = std::fs::read_to_string(layout.stack_file()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the recorded stack runs and answers.
pub(crate) async fn is_running(layout: &Layout) -> bool {
    running_stack(layout).await.is_some()
}

/// The recorded stack, if every one of its services is alive and answers.
async fn running_stack(layout: &Layout) -> Option<StackInfo> {
    let stack = read_stack(layout)?;
    let expected =
        ["synapse", "livekit", "matrixrtc-auth", "element-call", "livekit2", "matrixrtc-auth2"];
    if !expected.iter().all(|name| stack.pids.get(*name).is_some_and(|pid| process::is_alive(*pid)))
    {
        return None;
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().ok()?;
    let second = stack.second_sfu.as_ref()?;
    let checks = [
        format!("{}/_matrix/client/versions", stack.homeserver_url),
        stack.livekit_url.replacen("ws://", "http://", 1),
        format!("{}/healthz", stack.auth_service_url),
        format!("{}/config.json", stack.element_call_url),
        second.livekit_url.replacen("ws://", "http://", 1),
        format!("{}/healthz", second.auth_service_url),
    ];
    for url in checks {
        if !http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return None;
        }
    }
    Some(stack)
}

/// The process ids recorded in `stack.json`, read leniently so that a description written by an
/// older version of this tool still lets `down` stop what it started.
fn recorded_pids(layout: &Layout) -> Option<std::collections::BTreeMap<String, u32>> {
    let text = std::fs::read_to_string(layout.stack_file()).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    serde_json::from_value(value.get("pids")?.clone()).ok()
}

/// Stops the services recorded in `stack.json` and removes it.
fn stop_recorded(layout: &Layout) -> anyhow::Result<()> {
    let Some(pids) = recorded_pids(layout) else {
        return Ok(());
    };
    let mut failures = Vec::new();
    for (name, pid) in &pids {
        match process::stop(*pid, Duration::from_secs(15)) {
            Ok(true) => eprintln!("stopped {name} (pid {pid})"),
            Ok(false) => {}
            Err(error) => failures.push(format!("{name} (pid {pid}): {error:#}")),
        }
    }
    std::fs::remove_file(layout.stack_file()).context("removing stack.json")?;
    if !failures.is_empty() {
        bail!("could not stop: {}", failures.join("; "));
    }
    Ok(())
}

/// `devstack down`.
pub(crate) fn down() -> anyhow::Result<()> {
    let layout = Layout::new();
    if recorded_pids(&layout).is_none() {
        eprintln!("the local stack is not running");
        return Ok(());
    }
    stop_recorded(&layout)
}

/// `devstack status`.
pub(crate) async fn status() -> anyhow::Result<()> {
    let layout = Layout::new();
    match running_stack(&layout).await {
        Some(stack) => {
            print_status(&stack);
            Ok(())
        }
        None if read_stack(&layout).is_some() => {
            bail!(
                "the local stack is recorded in {} but not every service answers; run `cargo xtask devstack down` then `up`",
                layout.stack_file().display()
            )
        }
        None => bail!("the local stack is not running; start it with `cargo xtask devstack up`"),
    }
}

/// Prints what runs and where.
pub(crate) fn print_status(stack: &StackInfo) {
    let pid = |name: &str| stack.pids.get(name).map_or_else(|| "-".to_owned(), u32::to_string);
    println!("local MatrixRTC stack (all on 127.0.0.1):");
    println!(
        "  Synapse {SYNAPSE_VERSION:<9} {:<32} pid {}  server name {}",
        stack.homeserver_url,
        pid("synapse"),
        stack.server_name
    );
    println!(
        "  LiveKit {LIVEKIT_VERSION:<9} {:<32} pid {}  media UDP port {}",
        stack.livekit_url,
        pid("livekit"),
        stack.livekit_udp_port
    );
    println!("  matrixrtc-auth    {:<32} pid {}", stack.auth_service_url, pid("matrixrtc-auth"));
    if let Some(second) = &stack.second_sfu {
        println!(
            "  second SFU: LiveKit {:<22} pid {}  media UDP port {}",
            second.livekit_url,
            pid("livekit2"),
            second.livekit_udp_port
        );
        println!(
            "              matrixrtc-auth {:<17} pid {}",
            second.auth_service_url,
            pid("matrixrtc-auth2")
        );
    }
    println!(
        "  Element Call      {:<32} pid {}  (npm @element-hq/element-call-embedded)",
        stack.element_call_url,
        pid("element-call")
    );
    println!("  description: {}", Layout::new().stack_file().display());
    println!("  logs:        {}/<service>/", stack.state_dir.display());
}
