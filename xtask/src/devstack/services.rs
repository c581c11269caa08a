//! One service of the running stack killed and brought back on the same ports with the same
//! data: the faults `cargo xtask chaos` injects into the stack.

use anyhow::Context as _;
use rtc_test_support::StackInfo;

use super::install::Tools;
use super::synapse::Start;
use super::{Layout, livekit, process, start_auth, synapse, write_stack};

/// How long a restarted service may take to answer again.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(90);

/// A service of the stack that can crash and come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// The homeserver.
    Synapse,
    /// The (first) LiveKit server.
    Livekit,
    /// The (first) authorization service.
    Auth,
}

impl Service {
    /// Its name in `stack.json` and its folder under `.devstack/`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Synapse => "synapse",
            Self::Livekit => "livekit",
            Self::Auth => "matrixrtc-auth",
        }
    }
}

/// Kills `service` as a crash would (SIGKILL to its process group, nothing sent before) and
/// waits until it is gone.
pub(crate) fn kill(stack: &mut StackInfo, service: Service) -> anyhow::Result<()> {
    let layout = Layout::new();
    let pid = stack
        .pids
        .remove(service.name())
        .with_context(|| format!("{} is not running", service.name()))?;
    process::kill_now(pid).with_context(|| format!("killing {}", service.name()))?;
    write_stack(&layout, stack)
}

/// Starts `service` again on its ports, with its data (Synapse's database), its log continued,
/// and waits until it answers.
pub(crate) async fn restart(stack: &mut StackInfo, service: Service) -> anyhow::Result<()> {
    let layout = Layout::new();
    let tools = Tools::locate(&layout)?;
    let port = |url: &str| -> anyhow::Result<u16> {
        reqwest::Url::parse(url)?.port().with_context(|| format!("{url} has no port"))
    };
    let dir = layout.service_dir(service.name());
    let (pid, ready, log) = match service {
        Service::Synapse => (
            synapse::start(&layout, &tools, stack, port(&stack.homeserver_url)?, Start::Again)?,
            format!("{}/_matrix/client/versions", stack.homeserver_url),
            dir.join("homeserver.log"),
        ),
        Service::Livekit => (
            livekit::start(
                &layout,
                &tools,
                stack,
                &livekit::Sfu {
                    name: service.name(),
                    port: port(&stack.livekit_url)?,
                    udp_port: stack.livekit_udp_port,
                    webhook_url: &format!("{}/sfu_webhook", stack.auth_service_url),
                },
                false,
            )?,
            stack.livekit_url.replacen("ws://", "http://", 1),
            dir.join("livekit.log"),
        ),
        Service::Auth => (
            start_auth(
                &layout,
                &tools,
                stack,
                service.name(),
                &stack.livekit_url,
                port(&stack.auth_service_url)?,
            )?,
            format!("{}/healthz", stack.auth_service_url),
            dir.join("matrixrtc-auth.log"),
        ),
    };
    stack.pids.insert(service.name().to_owned(), pid);
    write_stack(&layout, stack)?;
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    process::wait_until_ready(&http, service.name(), &ready, pid, READY_WITHIN, &log).await
}
