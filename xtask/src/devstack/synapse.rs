//! Synapse configured for MatrixRTC: delayed events, RTC transports, sticky events, OpenID.

use std::process::Command;

use anyhow::Context as _;
use rtc_test_support::StackInfo;

use super::install::Tools;
use super::{Layout, process};

/// How Synapse starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// A fresh database and log: tests and the demo begin from an empty homeserver.
    Fresh,
    /// The same database (after a crash), its log continued.
    Again,
}

/// Writes the configuration and starts Synapse on `port`; returns its process id.
pub(crate) fn start(
    layout: &Layout,
    tools: &Tools,
    stack: &StackInfo,
    port: u16,
    how: Start,
) -> anyhow::Result<u32> {
    let dir = layout.service_dir("synapse");
    let data = dir.join("data");
    let log = dir.join("homeserver.log");
    if how == Start::Fresh {
        if data.exists() {
            std::fs::remove_dir_all(&data).context("removing the old Synapse database")?;
        }
        let _ = std::fs::remove_file(&log);
    }
    std::fs::create_dir_all(&data)?;
    let config = dir.join("homeserver.yaml");
    let log_config = dir.join("log.config");
    std::fs::write(&log_config, log_config_yaml(&log.display().to_string()))?;
    std::fs::write(&config, homeserver_yaml(stack, port, &dir.display().to_string()))?;

    // Creates the signing key when missing; starts nothing.
    let output = Command::new(&tools.python)
        .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
        .arg(&config)
        .current_dir(&dir)
        .output()
        .context("generating the Synapse signing key")?;
    if !output.status.success() {
        anyhow::bail!(
            "generating the Synapse signing key failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut command = Command::new(&tools.python);
    command.args(["-m", "synapse.app.homeserver", "-c"]).arg(&config).current_dir(&dir);
    process::spawn_detached(command, &dir.join("stdout.log"))
}

fn homeserver_yaml(stack: &StackInfo, port: u16, dir: &str) -> String {
    let server_name = &stack.server_name;
    let secret = &stack.registration_shared_secret;
    let auth = &stack.auth_service_url;
    format!(
        r#"# Written by `cargo xtask devstack up`; rewritten at every start.
server_name: "{server_name}"
pid_file: "{dir}/data/homeserver.pid"
public_baseurl: "http://127.0.0.1:{port}/"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      # openid serves /_matrix/federation/v1/openid/userinfo for the authorization service.
      - names: [client, openid]
        compress: false
database:
  name: sqlite3
  args:
    database: "{dir}/data/homeserver.db"
log_config: "{dir}/log.config"
media_store_path: "{dir}/data/media_store"
signing_key_path: "{dir}/signing.key"
registration_shared_secret: "{secret}"
enable_registration: false
report_stats: false
macaroon_secret_key: "devstack-macaroon-secret"
form_secret: "devstack-form-secret"
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
enable_metrics: false
presence:
  enabled: false

# MatrixRTC
max_event_delay_duration: 24h
matrix_rtc:
  transports:
    - type: livekit
      livekit_service_url: "{auth}"
extra_well_known_client_content:
  org.matrix.msc4143.rtc_foci:
    - type: livekit
      livekit_service_url: "{auth}"
experimental_features:
  msc4143_enabled: true
  msc4140_max_delayed_events_per_user: 100
  msc4222_enabled: true
  msc4354_enabled: true
  msc4075_enabled: true

# Rate limits relaxed for tests
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_login:
  address: {{per_second: 1000, burst_count: 1000}}
  account: {{per_second: 1000, burst_count: 1000}}
  failed_attempts: {{per_second: 1000, burst_count: 1000}}
rc_joins:
  local: {{per_second: 1000, burst_count: 1000}}
  remote: {{per_second: 1000, burst_count: 1000}}
rc_joins_per_room: {{per_second: 1000, burst_count: 1000}}
rc_invites:
  per_room: {{per_second: 1000, burst_count: 1000}}
  per_user: {{per_second: 1000, burst_count: 1000}}
  per_issuer: {{per_second: 1000, burst_count: 1000}}
rc_room_creation: {{per_second: 1000, burst_count: 1000}}
rc_delayed_event_mgmt: {{per_second: 1000, burst_count: 1000}}
rc_key_requests: {{per_second: 1000, burst_count: 1000}}
rc_presence:
  per_user: {{per_second: 1000, burst_count: 1000}}
rc_profile: {{per_second: 1000, burst_count: 1000}}
"#
    )
}

fn log_config_yaml(log: &str) -> String {
    format!(
        r#"version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: "{log}"
    filters: [context]
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
loggers:
  synapse.storage.SQL:
    level: INFO
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"#
    )
}
