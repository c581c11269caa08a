//! `cargo xtask bench join`: how long it takes from starting the program to Element Call
//! showing its video, and where the time goes; and Element Call's own join on the same stack.
//!
//! Element Call 0.26.1 (headless Chromium) sits in a call room and watches its remote videos
//! (`interop/element-call-join.mjs` with `WATCH_RUNS`). The release build of
//! `example-rtc-livekit-join` (follow mode, red test frames) is started `--runs` times; each run
//! measures wall-clock time from just before the process is spawned to the moment Element Call
//! finds a red remote picture (both clocks are this machine's). The program's own milestones
//! (`elapsed_ms` since its start) split the time into login, room, credentials, LiveKit,
//! membership and first frame. The first run logs in with a password and fills a fresh store;
//! the later ones restore the stored session, as a bot that restarts does.
//!
//! For comparison, a second Element Call joins the same call the same way a person's browser
//! does (Chromium starts, the page loads, the lobby's "Join call" is clicked at once), and the
//! first one measures when it shows that member's camera.
//!
//! Results: a table on stdout and `target/bench/join.json`.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rtc_test_support::{ElementCall, Homeserver, Login, User};
use serde::Serialize;

use crate::devstack::{self, Layout};

/// Options of `cargo xtask bench join`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct JoinOptions {
    /// How many times the program joins (the first one logs in with a password).
    #[arg(long, default_value_t = 6)]
    runs: u32,
    /// How many times a second Element Call joins, for comparison.
    #[arg(long, default_value_t = 3)]
    element_call_runs: u32,
    /// The program's `RUST_LOG` (for example `info,livekit_str0m=debug`); when given, the
    /// program's log of every run is printed, to see where a slow join spent its time.
    #[arg(long)]
    program_log: Option<String>,
}

/// The milestones the program logs, in order.
const MILESTONES: [&str; 6] =
    ["login", "room", "credentials", "livekit", "first_frame", "membership"];

#[derive(Debug, Serialize)]
struct ProgramRun {
    run: u32,
    /// Process start to Element Call showing the video, ms.
    total_ms: u64,
    /// The program's milestones, ms since its start.
    milestones: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
struct ElementCallRun {
    run: u32,
    /// Chromium start to the first Element Call showing the second one's camera, ms.
    total_ms: u64,
    /// "Join call" clicked to the video shown, ms.
    from_click_ms: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Runs the benchmark.
pub(crate) async fn join(options: &JoinOptions) -> anyhow::Result<()> {
    let layout = Layout::new();
    devstack::ensure_build_packages()?;
    let stack = devstack::up().await?;
    let program = build_release(&layout)?;
    let hs = Homeserver::new(&stack);
    let person = hs.register_unique("person").await?;
    let bot = hs.register_unique("joinbot").await?;
    let second = hs.register_unique("second").await?;
    let room_id = hs.create_call_room(&person, &[&bot, &second]).await?;
    hs.join(&second, &room_id).await?;
    let name = |u: &User| {
        u.user_id.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned()
    };
    let person_ec = hs.login(&name(&person), &name(&person), "WATCHER").await?;
    let store = layout.root.join("bench-join-store");
    let _ = std::fs::remove_dir_all(&store);

    // The program, joining the watcher's call again and again.
    let mut watcher = ElementCall::start(
        &stack,
        Login::Session(&person_ec),
        &room_id,
        &[
            ("EXPECT_VIDEO", "red".into()),
            ("WATCH_RUNS", options.runs.to_string()),
            ("STAY_SECONDS", "600".into()),
        ],
    )?;
    watcher.wait("in-call", None, Duration::from_secs(90)).await.map_err(anyhow::Error::msg)?;
    let mut program_runs = Vec::new();
    for run in 1..=options.runs {
        let started = unix_ms();
        let mut child = Command::new(&program)
            .env_clear()
            .env("HOMESERVER_URL", &stack.homeserver_url)
            .env("MATRIX_USERNAME", name(&bot))
            .env("MATRIX_PASSWORD", name(&bot))
            .env("ROOM_ID", &room_id)
            .env("V4L2_VIDEO_SOURCE", "test_red")
            .env("MATRIX_STORE_DIR", &store)
            .env("RUST_LOG", options.program_log.as_deref().unwrap_or("info"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the program")?;
        let stderr = child.stderr.take().context("the program's log")?;
        let log = std::thread::spawn(move || {
            BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>()
        });
        let seen = watcher
            .wait("video-seen", Some(run), Duration::from_secs(60))
            .await
            .map_err(anyhow::Error::msg);
        let total = seen.map(|s| s["t"].as_u64().unwrap_or(0).saturating_sub(started));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = child.wait();
        let log = log.join().unwrap_or_default();
        let total =
            total.with_context(|| format!("run {run}; the program's log:\n{}", log.join("\n")))?;
        let milestones = MILESTONES
            .iter()
            .filter_map(|m| {
                let line = log.iter().find(|l| l.contains(&format!("milestone=\"{m}\"")))?;
                let value =
                    line.split("elapsed_ms=").nth(1)?.split_whitespace().next()?.parse().ok()?;
                Some(((*m).to_owned(), value))
            })
            .collect();
        if options.program_log.is_some() {
            for line in &log {
                eprintln!("run {run} | {line}");
            }
            eprintln!("run {run} | seen at +{total} ms");
        }
        watcher
            .wait("video-gone", Some(run), Duration::from_secs(60))
            .await
            .map_err(anyhow::Error::msg)?;
        program_runs.push(ProgramRun { run, total_ms: total, milestones });
    }
    watcher.stop().await;

    // Element Call's own join, watched by Element Call.
    let second_ec = hs.login(&name(&second), &name(&second), "SECONDEC").await?;
    let mut element_call_runs = Vec::new();
    for run in 1..=options.element_call_runs {
        let mut watcher = ElementCall::start(
            &stack,
            Login::Session(&person_ec),
            &room_id,
            // Chromium's fake camera: mostly green.
            &[
                ("EXPECT_VIDEO", "0,150,0".into()),
                ("WATCH_RUNS", "1".into()),
                ("STAY_SECONDS", "600".into()),
            ],
        )?;
        watcher.wait("in-call", None, Duration::from_secs(90)).await.map_err(anyhow::Error::msg)?;
        let started = unix_ms();
        let mut joiner = ElementCall::start(
            &stack,
            Login::Session(&second_ec),
            &room_id,
            &[("STAY_SECONDS", "15".into())],
        )?;
        let clicked = joiner
            .wait("clicked-join", None, Duration::from_secs(90))
            .await
            .map_err(anyhow::Error::msg)?;
        let seen = watcher
            .wait("video-seen", Some(1), Duration::from_secs(60))
            .await
            .map_err(anyhow::Error::msg)?;
        let seen_at = seen["t"].as_u64().unwrap_or(0);
        element_call_runs.push(ElementCallRun {
            run,
            total_ms: seen_at.saturating_sub(started),
            from_click_ms: seen_at.saturating_sub(clicked["t"].as_u64().unwrap_or(0)),
        });
        joiner.stop().await;
        watcher.stop().await;
        // Element Call's own delayed leave takes the killed members out of the call.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    report(&layout, &program_runs, &element_call_runs)
}

pub(super) fn build_release(layout: &Layout) -> anyhow::Result<std::path::PathBuf> {
    let status = crate::cargo::command()
        .current_dir(&layout.workspace)
        .args(["build", "--release", "--quiet", "-p", "example-rtc-livekit-join"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the program failed");
    }
    Ok(layout.target().join("release/example-rtc-livekit-join"))
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn report(
    layout: &Layout,
    program: &[ProgramRun],
    element_call: &[ElementCallRun],
) -> anyhow::Result<()> {
    println!();
    println!(
        "program start → its first frame shown by Element Call (ms; milestones in ms since start)"
    );
    print!("{:>4} {:>7}", "run", "total");
    for m in MILESTONES {
        print!(" {m:>12}");
    }
    println!();
    for run in program {
        print!("{:>4} {:>7}", run.run, run.total_ms);
        for m in MILESTONES {
            match run.milestones.iter().find(|(name, _)| name == m) {
                Some((_, ms)) => print!(" {ms:>12}"),
                None => print!(" {:>12}", "-"),
            }
        }
        println!();
    }
    let later: Vec<u64> = program.iter().skip(1).map(|r| r.total_ms).collect();
    println!("median of the runs after the first: {} ms", median(later.clone()));
    println!();
    println!("Element Call joining the same call (ms)");
    println!("{:>4} {:>16} {:>16}", "run", "browser start", "'Join call'");
    for run in element_call {
        println!("{:>4} {:>16} {:>16}", run.run, run.total_ms, run.from_click_ms);
    }
    println!(
        "median: {} ms from browser start, {} ms from the click",
        median(element_call.iter().map(|r| r.total_ms).collect()),
        median(element_call.iter().map(|r| r.from_click_ms).collect())
    );
    let out = layout.target().join("bench");
    std::fs::create_dir_all(&out)?;
    let json = serde_json::json!({
        "program": program,
        "program_median_after_first_ms": median(later),
        "element_call": element_call,
    });
    std::fs::write(out.join("join.json"), serde_json::to_vec_pretty(&json)?)?;
    println!("written to {}", out.join("join.json").display());
    Ok(())
}
