//! `cargo xtask soak --minutes N`: the program in a call for N minutes, publishing a moving
//! pattern and a tone and receiving a second program's video and audio, while its resident
//! memory, open file descriptors, threads and CPU are sampled every 10 s from `/proc`.
//!
//! It fails when media stops flowing, or when a resource grows: the least-squares slope over the
//! last half of the samples (after a minute of warm-up) above [`Limits`]. The samples go to
//! `test-artifacts/soak.csv`, a plot to `test-artifacts/soak.svg` and, drawn by the stack's
//! Chromium, `test-artifacts/soak.png`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rtc_test_support::{Homeserver, StackInfo};

use crate::demo::{build_program, forward_log, program_in_room, stop, wait_for_line};
use crate::devstack::{self, Layout};

/// Seconds between samples.
const INTERVAL: Duration = Duration::from_secs(10);
/// Left out of the samples: connecting, the encoder's and decoders' first allocations.
const WARM_UP: Duration = Duration::from_secs(60);
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks: 100 a second on Linux (x86-64, ARM).
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// `cargo xtask soak` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakOptions {
    /// How long to sample, after the warm-up.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) minutes: f64,
}

/// Growth allowed, per minute, over the last half of the samples.
#[derive(Debug, Clone, Copy)]
struct Limits {
    rss_mib: f64,
    fds: f64,
    threads: f64,
}

/// The stated thresholds: a leak of 1 KiB per frame at 15 fps is 0.9 MiB a minute; a file
/// descriptor or a thread per reconnect shows over any long run.
const LIMITS: Limits = Limits { rss_mib: 0.5, fds: 0.2, threads: 0.2 };

/// One sample of the program.
#[derive(Debug, Clone, Copy)]
struct Sample {
    minutes: f64,
    rss_mib: f64,
    fds: f64,
    threads: f64,
    cpu_percent: f64,
}

pub(crate) async fn run(options: &SoakOptions) -> anyhow::Result<()> {
    if options.minutes.is_nan() || options.minutes <= 0.0 {
        bail!("--minutes must be positive");
    }
    let layout = Layout::new();
    let was_running = devstack::is_running(&layout).await;
    let stack = devstack::up().await?;
    let result = soak(&layout, &stack, options.minutes).await;
    if !was_running {
        devstack::down()?;
    }
    result
}

async fn soak(layout: &Layout, stack: &StackInfo, minutes: f64) -> anyhow::Result<()> {
    let program = build_program(layout)?;
    let hs = Homeserver::new(stack);
    let measured = hs.register_unique("soak").await?;
    let other = hs.register_unique("soakpeer").await?;
    let room_id = hs.create_call_room(&measured, &[&other]).await?;
    hs.join(&other, &room_id).await?;
    let dir = layout.root.join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let start =
        |user: &rtc_test_support::User, name: &str, source: &str| -> anyhow::Result<Child> {
            program_in_room(&mut Command::new(&program), stack, user, &room_id)
                .env("V4L2_VIDEO_SOURCE", source)
                .env("VIDEO_FPS", "15")
                .env("AUDIO_SOURCE", "tone")
                .env("CALL_PRESENCE", "always")
                .env("STATUS_INTERVAL_SECS", "5")
                .env("MATRIX_STORE_DIR", dir.join(name))
                .spawn()
                .with_context(|| format!("starting {}", program.display()))
        };
    let mut peer = start(&other, "peer", "test_red")?;
    let mut bot = start(&measured, "bot", "pattern")?;
    let result = async {
        let _peer_log = forward_log(&mut peer, &dir.join("peer.log"), false)?;
        let log = forward_log(&mut bot, &dir.join("bot.log"), false)?;
        wait_for_line(&log, "video received", Duration::from_secs(90))
            .await
            .context("the program never received the other's video; its log is in .devstack/soak/bot.log")?;
        eprintln!("soak: both programs in the call; warming up for {WARM_UP:?}, then {minutes} min of samples");
        tokio::time::sleep(WARM_UP).await;
        let samples = sample(bot.id(), &log, minutes).await?;
        report(layout, stack, &samples)
    }
    .await;
    stop(&mut bot);
    stop(&mut peer);
    result
}

/// Samples the program every [`INTERVAL`] for `minutes`; fails when it dies or its media stops.
async fn sample(
    pid: u32,
    log: &std::sync::Mutex<Vec<String>>,
    minutes: f64,
) -> anyhow::Result<Vec<Sample>> {
    let received = || {
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.contains("video received"))
            .count()
    };
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last_cpu = (Instant::now(), cpu_ticks(pid)?);
    let mut last_received = received();
    while started.elapsed().as_secs_f64() < minutes * 60.0 {
        tokio::time::sleep(INTERVAL).await;
        let (status, ticks) = (proc_status(pid)?, cpu_ticks(pid)?);
        let now = Instant::now();
        let cpu_percent = (ticks - last_cpu.1) as f64
            / TICKS_PER_SECOND
            / now.duration_since(last_cpu.0).as_secs_f64()
            * 100.0;
        last_cpu = (now, ticks);
        let sample = Sample {
            minutes: started.elapsed().as_secs_f64() / 60.0,
            rss_mib: status.0,
            fds: open_fds(pid)? as f64,
            threads: status.1,
            cpu_percent,
        };
        eprintln!(
            "soak: {:5.1} min  rss {:6.1} MiB  fds {:3}  threads {:3}  cpu {:5.1} %",
            sample.minutes, sample.rss_mib, sample.fds, sample.threads, sample.cpu_percent
        );
        samples.push(sample);
        let now_received = received();
        if now_received == last_received {
            bail!(
                "no `video received` line for {INTERVAL:?}: the program's media stopped (its log is in \
                 .devstack/soak/bot.log)"
            );
        }
        last_received = now_received;
    }
    Ok(samples)
}

/// `VmRSS` in MiB and `Threads` of `/proc/<pid>/status`.
fn proc_status(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("the program is gone (reading /proc/<pid>/status)")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")? / 1024.0, field("Threads:")?))
}

/// User and system CPU ticks of `/proc/<pid>/stat`.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/<pid>/stat")?;
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parse = |i: usize| {
        fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("malformed /proc/<pid>/stat")
    };
    // After the name: state is field 3, utime field 14, stime field 15.
    Ok(parse(11)? + parse(12)?)
}

pub(crate) fn open_fds(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd")).context("reading /proc/<pid>/fd")?.count())
}

/// The least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points.iter().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x / n, sy + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

/// Slopes per minute over the last half of the samples.
fn growth(samples: &[Sample]) -> Limits {
    let half = &samples[samples.len() / 2..];
    let over = |value: fn(&Sample) -> f64| {
        slope(&half.iter().map(|s| (s.minutes, value(s))).collect::<Vec<_>>())
    };
    Limits { rss_mib: over(|s| s.rss_mib), fds: over(|s| s.fds), threads: over(|s| s.threads) }
}

fn report(layout: &Layout, stack: &StackInfo, samples: &[Sample]) -> anyhow::Result<()> {
    if samples.len() < 4 {
        bail!("only {} samples: soak for at least a minute", samples.len());
    }
    let artifacts = layout.workspace.join("test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let mut csv = String::from("minutes,rss_mib,fds,threads,cpu_percent\n");
    for s in samples {
        csv.push_str(&format!(
            "{:.2},{:.2},{},{},{:.1}\n",
            s.minutes, s.rss_mib, s.fds, s.threads, s.cpu_percent
        ));
    }
    std::fs::write(artifacts.join("soak.csv"), csv)?;
    let svg = artifacts.join("soak.svg");
    std::fs::write(&svg, plot(samples))?;
    draw_png(stack, &svg, &artifacts.join("soak.png"));

    let grown = growth(samples);
    let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_percent).collect();
    let mean_cpu = cpu.iter().sum::<f64>() / cpu.len() as f64;
    let spread = cpu.iter().map(|c| (c - mean_cpu).powi(2)).sum::<f64>() / cpu.len() as f64;
    println!(
        "soak: {} samples over {:.1} min; over the last half, per minute: rss {:+.3} MiB (limit {}), fds {:+.3} \
         (limit {}), threads {:+.3} (limit {}); rss {:.1}–{:.1} MiB; cpu mean {:.1} %, standard deviation {:.1}; \
         test-artifacts/soak.{{csv,svg,png}}",
        samples.len(),
        samples.last().map_or(0.0, |s| s.minutes),
        grown.rss_mib,
        LIMITS.rss_mib,
        grown.fds,
        LIMITS.fds,
        grown.threads,
        LIMITS.threads,
        samples.iter().map(|s| s.rss_mib).fold(f64::INFINITY, f64::min),
        samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max),
        mean_cpu,
        spread.sqrt(),
    );
    let mut over = Vec::new();
    if grown.rss_mib > LIMITS.rss_mib {
        over.push(format!("resident memory grows {:.3} MiB a minute", grown.rss_mib));
    }
    if grown.fds > LIMITS.fds {
        over.push(format!("open file descriptors grow {:.3} a minute", grown.fds));
    }
    if grown.threads > LIMITS.threads {
        over.push(format!("threads grow {:.3} a minute", grown.threads));
    }
    if !over.is_empty() {
        bail!("the program leaks: {}", over.join("; "));
    }
    Ok(())
}

/// A panel of the plot: its title, its value, its colour.
type Panel = (&'static str, fn(&Sample) -> f64, &'static str);

/// Four panels (memory, file descriptors, threads, CPU) over time, as SVG.
fn plot(samples: &[Sample]) -> String {
    const WIDTH: f64 = 900.0;
    const PANEL: f64 = 160.0;
    const LEFT: f64 = 90.0;
    let end = samples.last().map_or(1.0, |s| s.minutes).max(0.1);
    let panels: [Panel; 4] = [
        ("resident memory (MiB)", |s| s.rss_mib, "#1f77b4"),
        ("open file descriptors", |s| s.fds, "#d62728"),
        ("threads", |s| s.threads, "#2ca02c"),
        ("CPU (% of one core)", |s| s.cpu_percent, "#9467bd"),
    ];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" font-family=\"sans-serif\" \
         font-size=\"12\"><rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        PANEL * 4.0 + 30.0
    );
    for (i, (title, value, colour)) in panels.iter().enumerate() {
        let top = i as f64 * PANEL + 10.0;
        let values: Vec<f64> = samples.iter().map(value).collect();
        let (low, high) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
        let (low, high) = if high - low < 1e-9 { (low - 1.0, high + 1.0) } else { (low, high) };
        let (plot_w, plot_h) = (WIDTH - LEFT - 20.0, PANEL - 40.0);
        let x = |m: f64| LEFT + m / end * plot_w;
        let y = |v: f64| top + 20.0 + (high - v) / (high - low) * plot_h;
        let points: Vec<String> = samples
            .iter()
            .zip(&values)
            .map(|(s, v)| format!("{:.1},{:.1}", x(s.minutes), y(*v)))
            .collect();
        svg.push_str(&format!(
            "<text x=\"{LEFT}\" y=\"{:.0}\" font-weight=\"bold\">{title}</text>\n\
             <rect x=\"{LEFT}\" y=\"{:.1}\" width=\"{plot_w:.1}\" height=\"{plot_h:.1}\" fill=\"none\" stroke=\"#999\"/>\n\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{high:.1}</text>\n\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{low:.1}</text>\n\
             <polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            top + 14.0,
            top + 20.0,
            LEFT - 6.0,
            top + 24.0,
            LEFT - 6.0,
            top + 20.0 + plot_h,
            points.join(" "),
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"{:.0}\">0 min</text><text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{end:.1} min</text>\n</svg>\n",
        PANEL * 4.0 + 20.0,
        WIDTH - 20.0,
        PANEL * 4.0 + 20.0,
    ));
    svg
}

/// The SVG drawn into a PNG by the stack's headless Chromium (a missing PNG is said, not fatal:
/// the SVG and the CSV hold the same).
fn draw_png(stack: &StackInfo, svg: &Path, png: &Path) {
    let _ = std::fs::remove_file(png);
    let drawn = Command::new(&stack.chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=900,670",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(drawn, Ok(status) if status.success()) || !png.is_file() {
        eprintln!("soak: Chromium did not draw {}; the SVG is next to it", png.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(rss: impl Fn(f64) -> f64) -> Vec<Sample> {
        (1..=12)
            .map(|i| {
                let minutes = i as f64 / 6.0;
                Sample {
                    minutes,
                    rss_mib: rss(minutes),
                    fds: 40.0,
                    threads: 20.0,
                    cpu_percent: 30.0,
                }
            })
            .collect()
    }

    #[test]
    fn a_flat_curve_does_not_grow_and_a_leak_does() {
        let flat = growth(&samples(|m| {
            80.0 + if ((m * 6.0) as u32).is_multiple_of(2) { 0.3 } else { -0.3 }
        }));
        assert!(flat.rss_mib.abs() < LIMITS.rss_mib, "{flat:?}");
        assert_eq!(flat.fds, 0.0);
        let leak = growth(&samples(|m| 80.0 + 2.0 * m));
        assert!((leak.rss_mib - 2.0).abs() < 1e-9, "{leak:?}");
        // Warm-up growth in the first half does not count.
        let settled = growth(&samples(|m| if m < 1.0 { 40.0 + 40.0 * m } else { 80.0 }));
        assert!(settled.rss_mib.abs() < 1e-9, "{settled:?}");
    }

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let ticks = cpu_ticks(std::process::id()).unwrap();
        assert!(ticks < 10_000_000);
        let (rss, threads) = proc_status(std::process::id()).unwrap();
        assert!(rss > 0.0 && threads >= 1.0);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
    }

    #[test]
    fn the_plot_has_a_panel_per_resource() {
        let svg = plot(&samples(|_| 80.0));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("resident memory (MiB)"));
    }
}
