//! The stack description file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The environment variable that points tests at a stack description other than the default.
pub const STACK_FILE_ENV: &str = "MATRIXRTC_DEVSTACK_FILE";

/// What the local stack runs and where: written by `cargo xtask devstack up`, read by tests and
/// the demo. Everything listens on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInfo {
    /// The homeserver's client-server API base URL, such as `http://127.0.0.1:41234`.
    pub homeserver_url: String,
    /// The homeserver's server name (the part after `:` in user ids).
    pub server_name: String,
    /// Synapse's `registration_shared_secret`.
    pub registration_shared_secret: String,
    /// The LiveKit signalling URL, such as `ws://127.0.0.1:41235`.
    pub livekit_url: String,
    /// The LiveKit API key.
    pub livekit_api_key: String,
    /// The LiveKit API secret.
    pub livekit_api_secret: String,
    /// The UDP port LiveKit multiplexes media on.
    pub livekit_udp_port: u16,
    /// The MatrixRTC authorization service base URL (the `livekit_service_url` of transports).
    pub auth_service_url: String,
    /// Element Call (the npm build, standalone mode) configured for this stack.
    pub element_call_url: String,
    /// The Chromium that interop tests drive.
    pub chromium: PathBuf,
    /// The folder of the interop scripts (`interop/`, with its npm packages installed).
    pub interop_dir: PathBuf,
    /// The folder holding the stack's configuration, data and logs.
    pub state_dir: PathBuf,
    /// Process ids of the running services, by name.
    pub pids: std::collections::BTreeMap<String, u32>,
    /// A second LiveKit server with its own authorization service (multi-SFU calls).
    #[serde(default)]
    pub second_sfu: Option<SecondSfu>,
}

/// A second SFU of the stack: a LiveKit server and the authorization service that hands out
/// tokens for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondSfu {
    /// The LiveKit signalling URL.
    pub livekit_url: String,
    /// The UDP port it multiplexes media on.
    pub livekit_udp_port: u16,
    /// Its authorization service (a transport's `livekit_service_url`).
    pub auth_service_url: String,
}

/// The default location of the stack description: `.devstack/stack.json` in the workspace.
pub fn default_stack_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.devstack/stack.json")
}

impl StackInfo {
    /// Loads the stack description from `$MATRIXRTC_DEVSTACK_FILE` or the default location.
    pub fn load() -> Result<Self, Error> {
        let path =
            std::env::var_os(STACK_FILE_ENV).map(PathBuf::from).unwrap_or_else(default_stack_file);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::StackFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::StackFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The second SFU; panics with instructions when the running stack was started without one
    /// (by an older version of `cargo xtask devstack up`).
    #[track_caller]
    pub fn second_sfu(&self) -> &SecondSfu {
        self.second_sfu.as_ref().unwrap_or_else(|| {
            panic!(
                "the running stack has no second SFU; restart it with `cargo xtask devstack down` and `up`"
            )
        })
    }

    /// Loads the stack description and panics with instructions when the stack is not running.
    /// Tests that need the stack call this first, so that they fail loudly without it.
    #[track_caller]
    pub fn require() -> Self {
        match Self::load() {
            Ok(stack) => stack,
            Err(error) => panic!(
                "this test needs the local MatrixRTC stack, which is not running ({error}).\n\
                 Start it with `cargo xtask devstack up`, or run every test with `cargo xtask test`."
            ),
        }
    }
}
