//! The LiveKit server on loopback: fixed dev keys, one UDP port for all media (UDP mux), rooms
//! created only through the server API (as with a real MatrixRTC deployment).

use std::process::Command;

use rtc_test_support::StackInfo;

use super::install::Tools;
use super::{Layout, process};

/// One LiveKit server of the stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sfu<'a> {
    /// The service's name (its folder under `.devstack/`).
    pub(crate) name: &'a str,
    /// Its HTTP and WebSocket port.
    pub(crate) port: u16,
    /// Its media port.
    pub(crate) udp_port: u16,
    /// Where it posts its webhooks.
    pub(crate) webhook_url: &'a str,
}

/// Writes the configuration and starts a LiveKit server as service `name` (its folder under
/// `.devstack/`), posting its participant webhooks to `webhook_url` (its authorization service,
/// which keeps delegated delayed leaves alive with them); returns its process id. The log starts
/// anew unless `fresh_log` is false (a restart after a crash keeps both).
pub(crate) fn start(
    layout: &Layout,
    tools: &Tools,
    stack: &StackInfo,
    sfu: &Sfu<'_>,
    fresh_log: bool,
) -> anyhow::Result<u32> {
    let &Sfu { name, port, udp_port, webhook_url } = sfu;
    let dir = layout.service_dir(name);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("livekit.yaml");
    let log = dir.join("livekit.log");
    if fresh_log {
        let _ = std::fs::remove_file(&log);
    }
    let key = &stack.livekit_api_key;
    let secret = &stack.livekit_api_secret;
    // `debug` shows the server's side of signalling and of every keyframe request.
    let level = std::env::var("DEVSTACK_LIVEKIT_LOG").unwrap_or_else(|_| "info".to_owned());
    std::fs::write(
        &config,
        format!(
            r#"# Written by `cargo xtask devstack up`; rewritten at every start.
port: {port}
bind_addresses: ["127.0.0.1"]
keys:
  {key}: {secret}
logging:
  level: {level}
room:
  # As in MatrixRTC deployments: only the authorization service creates rooms.
  auto_create: false
rtc:
  udp_port: {udp_port}
  # No ICE over TCP: the server would listen on every interface for it.
  tcp_port: 0
  node_ip: 127.0.0.1
  use_external_ip: false
  enable_loopback_candidate: true
  interfaces:
    includes: [lo]
turn:
  enabled: false
webhook:
  api_key: {key}
  urls: ["{webhook_url}"]
"#
        ),
    )?;
    let mut command = Command::new(&tools.livekit_server);
    command.arg("--config").arg(&config).current_dir(&dir);
    process::spawn_detached(command, &log)
}
