//! Idempotent installation of the stack's programs into `.devstack/`.
//!
//! * Synapse from PyPI into a virtualenv (`.devstack/venv`), pinned;
//! * the LiveKit server with `go install` into `.devstack/bin`, pinned;
//! * matrixrtc-auth built from this workspace.
//!
//! Each step checks what is there first, so a second `up` installs nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::{LIVEKIT_VERSION, Layout, SYNAPSE_VERSION};

/// Paths of the installed programs.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    /// The virtualenv's Python (an absolute path, so that the process id is Synapse's own).
    pub(crate) python: PathBuf,
    pub(crate) livekit_server: PathBuf,
    pub(crate) matrixrtc_auth: PathBuf,
}

impl Tools {
    /// The programs `ensure_installed` put in place, without installing or building anything
    /// (for restarting a service of a running stack).
    pub(crate) fn locate(layout: &Layout) -> anyhow::Result<Self> {
        let tools = Self {
            python: layout.root.join("venv/bin/python"),
            livekit_server: layout.bin().join("livekit-server"),
            matrixrtc_auth: layout.target().join("debug/matrixrtc-auth"),
        };
        for path in [&tools.python, &tools.livekit_server, &tools.matrixrtc_auth] {
            if !path.exists() {
                bail!("{} is missing: run `cargo xtask devstack up` first", path.display());
            }
        }
        Ok(tools)
    }
}

/// Debian packages the workspace builds against: libvpx (VP8) and libopus (Opus), found with
/// pkg-config, and nasm, which makes the bundled openh264 (H.264) about twice as fast.
pub(crate) const BUILD_PACKAGES: &[&str] = &["pkg-config", "libvpx-dev", "libopus-dev", "nasm"];

/// Tools the tests use besides the stack: Chromium (driven by playwright-core), ffmpeg, an
/// independent decoder of the program's recordings, and systemd's `systemd-analyze`, which
/// checks the program's unit file.
pub(crate) const TEST_TOOL_PACKAGES: &[&str] = &["chromium", "ffmpeg", "systemd"];

/// What the optional features need to build: libclang for the `v4l` crate's bindings (`v4l2`),
/// OpenSSL's headers for `native-tls`, ALSA's headers for microphone capture (`alsa`).
pub(crate) const FEATURE_PACKAGES: &[&str] = &["libclang-dev", "libssl-dev", "libasound2-dev"];

/// The packages of `packages` that are not installed (`name` or `name:arch`).
pub(crate) fn missing_debian_packages(packages: &[&str]) -> Vec<String> {
    packages
        .iter()
        .filter(|p| {
            Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output().map_or(true, |o| {
                !String::from_utf8_lossy(&o.stdout).contains("install ok installed")
            })
        })
        .map(|p| (*p).to_owned())
        .collect()
}

/// Installs the Debian packages in `packages` that are missing (as root; otherwise names the
/// command to run).
pub(crate) fn ensure_debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing = missing_debian_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "missing Debian packages; install them with: sudo apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        );
    }
    apt_install(&missing)
}

/// `apt-get update` and `apt-get install` of `packages` (as root). The index of one
/// architecture or suite may fail to update (a mirror in the middle of a sync); the install
/// then goes on with the indexes apt has, and fails only when a package cannot be had.
pub(crate) fn apt_install(packages: &[String]) -> anyhow::Result<()> {
    eprintln!("installing Debian packages: {}", packages.join(" "));
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("apt-get update: cannot start apt-get")?;
    if !update.success() {
        eprintln!(
            "apt-get update reported a failure ({update}); installing from the indexes it has"
        );
    }
    run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )?;
    Ok(())
}

pub(crate) async fn ensure_installed(layout: &Layout) -> anyhow::Result<Tools> {
    let layout_a = layout.clone();
    let layout_b = layout.clone();
    let layout_c = layout.clone();
    // The three installs are independent: run them side by side.
    let synapse = tokio::task::spawn_blocking(move || ensure_synapse(&layout_a));
    let livekit = tokio::task::spawn_blocking(move || ensure_livekit(&layout_b));
    let auth = tokio::task::spawn_blocking(move || build_auth(&layout_c));
    let python = synapse.await??;
    let livekit_server = livekit.await??;
    let matrixrtc_auth = auth.await??;
    Ok(Tools { python, livekit_server, matrixrtc_auth })
}

pub(crate) fn run(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("{what}: cannot start {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ensure_synapse(layout: &Layout) -> anyhow::Result<PathBuf> {
    ensure_venv(&layout.root.join("venv"), "matrix-synapse", SYNAPSE_VERSION)
}

/// A virtualenv at `venv` with `package==version` from PyPI; returns its Python. Installs only
/// when the stamp file of that exact version is missing.
pub(crate) fn ensure_venv(venv: &Path, package: &str, version: &str) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python");
    let stamp = venv.join(format!(".{package}-{version}"));
    if stamp.exists() && python.exists() {
        return Ok(python);
    }
    eprintln!("installing {package} {version} from PyPI into {}", venv.display());
    if !python.exists() {
        let system_python = find_python()?;
        run(
            Command::new(&system_python).args(["-m", "venv"]).arg(venv),
            &format!("creating the virtualenv {}", venv.display()),
        )?;
    }
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("{package}=={version}"),
        ]),
        &format!("pip install {package}"),
    )?;
    std::fs::write(&stamp, b"")?;
    Ok(python)
}

/// A Python 3.10+ interpreter to create a virtualenv with.
fn find_python() -> anyhow::Result<PathBuf> {
    for candidate in ["python3", "python3.13", "python3.12", "python3.11", "python3.10"] {
        let Ok(out) = Command::new(candidate)
            .args(["-c", "import sys, venv; print(sys.version_info >= (3, 10))"])
            .output()
        else {
            continue;
        };
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "True" {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!(
        "Synapse and the benchmarks need Python 3.10 or newer with the venv module (Debian: apt-get install python3 python3-venv)"
    )
}

fn ensure_livekit(layout: &Layout) -> anyhow::Result<PathBuf> {
    let bin = layout.bin();
    let binary = bin.join("livekit-server");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(LIVEKIT_VERSION));
    if installed {
        return Ok(binary);
    }
    eprintln!(
        "installing the LiveKit server {LIVEKIT_VERSION} with go install into {}",
        bin.display()
    );
    std::fs::create_dir_all(&bin)?;
    let go = which("go").context(
        "the LiveKit server is built with Go, which is not on PATH; install a current Go toolchain",
    )?;
    run(
        Command::new(go)
            .args([
                "install",
                &format!("github.com/livekit/livekit-server/cmd/server@v{LIVEKIT_VERSION}"),
            ])
            .env("GOBIN", &bin)
            .env("CGO_ENABLED", "0"),
        "go install livekit-server",
    )?;
    // Go names the binary after its package directory.
    std::fs::rename(bin.join("server"), &binary)?;
    Ok(binary)
}

fn build_auth(layout: &Layout) -> anyhow::Result<PathBuf> {
    run(
        crate::cargo::build_programs("matrixrtc-auth").current_dir(&layout.workspace),
        "building matrixrtc-auth",
    )?;
    Ok(layout.target().join("debug/matrixrtc-auth"))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
