//! Element Call (the npm build) served on 127.0.0.1 for interop tests, plus what drives it:
//! Chromium from Debian and playwright-core from npm.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use rtc_test_support::StackInfo;

use super::{Layout, process};

/// Installs Chromium and ffmpeg (Debian packages) when missing and the npm packages of
/// `interop/`.
pub(crate) fn ensure_installed(layout: &Layout) -> anyhow::Result<PathBuf> {
    super::install::ensure_debian_packages(super::install::TEST_TOOL_PACKAGES)?;
    let chromium = PathBuf::from("/usr/bin/chromium");
    let interop = layout.workspace.join("interop");
    let stamp = interop.join("node_modules/.installed-from-lock");
    let lock = interop.join("package-lock.json");
    let fresh = stamp.metadata().and_then(|s| s.modified()).ok()
        >= lock.metadata().and_then(|l| l.modified()).ok()
        && stamp.exists();
    if !fresh {
        eprintln!(
            "installing the interop npm packages (Element Call, livekit-client, playwright-core)"
        );
        super::install::run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&interop),
            "npm ci",
        )?;
        std::fs::write(&stamp, b"")?;
    }
    Ok(chromium)
}

/// Copies the Element Call build, writes its `config.json` for this stack and serves it on
/// `port` (SPA fallback to `index.html`). Returns the server's process id.
pub(crate) fn start(layout: &Layout, stack: &StackInfo, port: u16) -> anyhow::Result<u32> {
    let dist = layout.workspace.join("interop/node_modules/@element-hq/element-call-embedded/dist");
    let root = layout.service_dir("element-call");
    let site = root.join("site");
    if site.exists() {
        std::fs::remove_dir_all(&site)?;
    }
    copy_dir(&dist, &site).with_context(|| format!("copying {}", dist.display()))?;
    let config = serde_json::json!({
        "default_server_config": {"m.homeserver": {"base_url": stack.homeserver_url, "server_name": stack.server_name}},
        "livekit": {"livekit_service_url": stack.auth_service_url},
        "matrix_rtc_session": {"wait_for_key_rotation_ms": 5000},
    });
    std::fs::write(site.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("serve-static").arg("--root").arg(&site).arg("--port").arg(port.to_string());
    process::spawn_detached(command, &root.join("server.log"))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
