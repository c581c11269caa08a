//! The systemd unit and its environment file (`deploy/`): the unit passes `systemd-analyze
//! verify`; every variable of the template is one the program reads; and the stop path the unit
//! sets up works: its kill signal, sent to the program in a call, ends it within the unit's stop
//! timeout with an exit code that `Restart=on-failure` leaves alone, and the membership and the
//! LiveKit participant are gone. Needs `systemd-analyze` (Debian's `systemd`, which `cargo xtask
//! test` installs) and the stack (`cargo xtask devstack up`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Setup;
use nix::sys::signal::Signal;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn unit() -> String {
    std::fs::read_to_string(deploy("example-rtc-livekit-join.service")).unwrap()
}

/// The value of `key=` in the unit's `[Service]` section (the last one, as systemd reads it).
fn service_setting(unit: &str, key: &str) -> Option<String> {
    let mut in_service = false;
    let mut value = None;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && let Some(v) = line.strip_prefix(&format!("{key}=")) {
            value = Some(v.trim().to_owned());
        }
    }
    value
}

/// `NAME=value` lines of the environment file template, as systemd reads them.
fn template_variables() -> Vec<(String, String)> {
    std::fs::read_to_string(deploy("example-rtc-livekit-join.env"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap_or_else(|| panic!("not NAME=value: {l}"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    // The unit as shipped, with its program where this build put it (verify checks that
    // ExecStart is an executable).
    let dir = std::env::temp_dir().join(rtc_test_support::unique_name("rtc-join-unit"));
    std::fs::create_dir_all(&dir).unwrap();
    let installed = dir.join("example-rtc-livekit-join.service");
    let program = env!("CARGO_BIN_EXE_example-rtc-livekit-join");
    let text = unit().replace(
        "ExecStart=/usr/local/bin/example-rtc-livekit-join",
        &format!("ExecStart={program}"),
    );
    assert!(text.contains(program), "the unit starts /usr/local/bin/example-rtc-livekit-join");
    std::fs::write(&installed, text).unwrap();
    let output =
        Command::new("systemd-analyze").arg("verify").arg(&installed).output().expect(
            "systemd-analyze runs (Debian package systemd; `cargo xtask test` installs it)",
        );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "systemd-analyze verify failed:\n{stderr}");
    // Unknown keys and bad values are warnings on stderr, with exit code 0.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify warns:\n{stderr}");
}

#[test]
fn the_unit_restarts_on_failure_as_an_unprivileged_camera_user() {
    let unit = unit();
    for (key, value) in [
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("DynamicUser", "yes"),
        ("SupplementaryGroups", "video audio"),
        ("EnvironmentFile", "/etc/example-rtc-livekit-join/env"),
        ("RestartPreventExitStatus", "2 3"),
    ] {
        assert_eq!(service_setting(&unit, key).as_deref(), Some(value), "{key}");
    }
}

#[test]
fn every_variable_of_the_template_is_one_the_program_reads() {
    let help = Command::new(env!("CARGO_BIN_EXE_example-rtc-livekit-join"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let variables = template_variables();
    assert!(variables.len() > 10, "{variables:?}");
    for (name, _) in &variables {
        if name == "RUST_LOG" {
            continue;
        }
        assert!(help.contains(&format!("[env: {name}")), "{name} is not in --help");
    }
    let password = variables.iter().find(|(n, _)| n == "MATRIX_PASSWORD").unwrap();
    assert!(password.1.is_empty(), "the template ships no password");
}

/// The unit's stop path: its kill signal, its stop timeout, an exit that is not restarted.
#[tokio::test]
async fn the_units_stop_signal_leaves_the_call_within_its_timeout() {
    let unit = unit();
    let signal: Signal = service_setting(&unit, "KillSignal").unwrap().parse().unwrap();
    let timeout = service_setting(&unit, "TimeoutStopSec").unwrap();
    let timeout = Duration::from_secs(timeout.trim_end_matches('s').parse().unwrap());
    let prevented = service_setting(&unit, "RestartPreventExitStatus").unwrap();

    // The template's settings with this stack's values (a test picture: no camera here).
    let setup = Setup::new("unit").await;
    let ours = setup.env();
    let template = template_variables();
    let mut env: Vec<(&str, String)> = template
        .iter()
        .map(|(name, value)| {
            let ours = ours.iter().find(|(n, _)| n == name);
            (name.as_str(), ours.map_or(value, |(_, v)| v).clone())
        })
        .collect();
    for (name, value) in &ours {
        if !env.iter().any(|(n, _)| n == name) {
            env.push((name, value.clone()));
        }
    }
    let (mut bot, device) = setup.start_in_the_call(&env).await;
    let stopping = Instant::now();
    bot.signal(signal);
    let status = bot.wait_exit(timeout).await;
    let took = stopping.elapsed();
    // 0: a clean stop, which `Restart=on-failure` does not restart.
    assert_eq!(status.code(), Some(0), "{}", bot.log());
    assert!(!prevented.split_whitespace().any(|c| c == "0"));
    assert!(took < Duration::from_secs(3), "{signal} took {took:?}");
    setup.wait_membership_gone(&device, Duration::from_secs(2)).await;
    setup.wait_participants(Duration::from_secs(3), |p| p.is_empty()).await;
    eprintln!("{signal} from the unit: exit 0 after {took:?} (the unit allows {timeout:?})");
}
