//! `cargo xtask fuzz [--runs N] [--jobs-nice] [TARGET...]`: every fuzz target of `fuzz/` (or the
//! ones named) for N inputs each (10,000,000 by default), one after the other.
//!
//! The targets are built with `cargo +nightly fuzz build -O`, with AddressSanitizer except those
//! of [`WITHOUT_SANITIZER`] (into `fuzz/target-nosan`). Then each built target runs with
//! `-runs=N` over its corpus `fuzz/corpus/<target>` (created when missing; it keeps what the run
//! finds) and its checked-in seeds `fuzz/seeds/<target>`, with the dictionary
//! `fuzz/dicts/<target>.dict` when there is one. libFuzzer's log of each run goes to
//! `test-artifacts/fuzz/<target>.log`; its final `Done N runs in S second(s)` line gives the
//! figures of a markdown table (target, sanitizer, runs, seconds, executions a second, corpus
//! files) in `test-artifacts/fuzz.md`, updated after each target (the rows of targets not run
//! this time are kept, so the table holds each target's last run) and printed at the end. A
//! target that
//! crashes, times out or runs out of memory fails the command, naming the input libFuzzer saved
//! under `fuzz/artifacts/<target>/`; the other targets still run.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Targets built without a sanitizer: the code they reach is safe Rust (str0m's SDP parser and
/// negotiation, the resampler, the jitter buffer; the libopus it calls is the system's, which
/// AddressSanitizer does not instrument), where AddressSanitizer finds nothing that the language
/// does not already stop. Its check of every memory access, each also traced as a comparison,
/// made these targets 5 to 15 times slower. Panics and aborts are still findings.
const WITHOUT_SANITIZER: &[&str] = &["audio_jitter_buffer", "livekit_server_sdp", "wav_file"];

/// Where the builds without a sanitizer go, under `fuzz/`.
const NO_SANITIZER_TARGET_DIR: &str = "target-nosan";

/// How a target is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    /// With AddressSanitizer (`cargo fuzz`'s default), into `fuzz/target`.
    AddressSanitizer,
    /// With `-s none`, into `fuzz/target-nosan` (so that neither build undoes the other).
    NoSanitizer,
}

impl Build {
    fn of(target: &str) -> Self {
        if WITHOUT_SANITIZER.contains(&target) { Self::NoSanitizer } else { Self::AddressSanitizer }
    }

    fn target_dir(self) -> &'static str {
        match self {
            Self::AddressSanitizer => "target",
            Self::NoSanitizer => NO_SANITIZER_TARGET_DIR,
        }
    }

    /// `cargo fuzz build` arguments.
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::AddressSanitizer => &[],
            Self::NoSanitizer => &["-s", "none", "--target-dir", NO_SANITIZER_TARGET_DIR],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::AddressSanitizer => "ASan",
            Self::NoSanitizer => "none",
        }
    }
}

/// `cargo xtask fuzz` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FuzzOptions {
    /// Inputs each target runs (libFuzzer's `-runs`).
    #[arg(long, default_value_t = 10_000_000)]
    pub(crate) runs: u64,
    /// Build and fuzz at the lowest CPU priority (`nice -n 19`), on a machine also used for
    /// other work.
    #[arg(long)]
    pub(crate) jobs_nice: bool,
    /// The targets to run (default: every target of `fuzz/Cargo.toml`).
    pub(crate) targets: Vec<String>,
}

/// What one finished run reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Done {
    runs: u64,
    seconds: u64,
}

/// One target's row of the table.
#[derive(Debug)]
struct Row {
    target: String,
    build: Build,
    done: Done,
    corpus_files: usize,
}

/// Builds the targets, runs each in turn and writes the table; fails when one failed.
pub(crate) fn run(options: &FuzzOptions) -> anyhow::Result<()> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the xtask crate lies inside the workspace")?;
    let fuzz_dir = workspace.join("fuzz");
    let all = list_targets(&fuzz_dir)?;
    let targets = if options.targets.is_empty() {
        all
    } else {
        if let Some(unknown) = options.targets.iter().find(|t| !all.contains(t)) {
            bail!("no fuzz target {unknown:?}; the targets are: {}", all.join(", "));
        }
        options.targets.clone()
    };

    let triple = host_triple()?;
    for target in &targets {
        let build = Build::of(target);
        eprintln!("xtask fuzz: building {target} (sanitizer: {})", build.name());
        let mut args = vec!["build", "-O", "--target", &triple];
        args.extend(build.args());
        args.push(target);
        let status = cargo_fuzz(&fuzz_dir, options.jobs_nice, &args)
            .status()
            .context("running cargo +nightly fuzz (install it with `cargo install cargo-fuzz`)")?;
        if !status.success() {
            bail!("cargo +nightly fuzz build -O {target} failed ({status})");
        }
    }

    let logs = workspace.join("test-artifacts").join("fuzz");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let report = workspace.join("test-artifacts").join("fuzz.md");
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for target in &targets {
        let build = Build::of(target);
        let binary = fuzz_dir.join(build.target_dir()).join(&triple).join("release").join(target);
        match run_target(&fuzz_dir, &binary, &logs, target, options) {
            Ok(row) => {
                eprintln!(
                    "xtask fuzz: {target}: {} runs in {} s, {} corpus files",
                    row.done.runs, row.done.seconds, row.corpus_files
                );
                rows.push(row);
            }
            Err(error) => {
                eprintln!("xtask fuzz: {target} FAILED: {error:#}");
                failures.push(format!("{target}: {error:#}"));
            }
        }
        // Written after each target, so that a long run shows how far it got.
        let previous = std::fs::read_to_string(&report).unwrap_or_default();
        std::fs::write(&report, merged_table(&previous, &rows))
            .with_context(|| format!("writing {}", report.display()))?;
    }

    // The table is in the file already; a full disk under a redirected stdout is no panic.
    let _ = writeln!(std::io::stdout(), "{}", merged_table("", &rows));
    eprintln!("xtask fuzz: table written to {}", report.display());
    if !failures.is_empty() {
        bail!("{} fuzz target(s) failed:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}

/// `cargo +nightly fuzz <args>` in `fuzz_dir`, under `nice -n 19` when asked.
fn cargo_fuzz(fuzz_dir: &Path, nice: bool, args: &[&str]) -> Command {
    let mut command = if nice {
        let mut command = Command::new("nice");
        command.args(["-n", "19", "cargo"]);
        command
    } else {
        Command::new("cargo")
    };
    command.args(["+nightly", "fuzz"]).args(args).current_dir(fuzz_dir);
    command
}

/// The host's target triple (what `cargo fuzz` builds for by default), from `rustc -vV`.
fn host_triple() -> anyhow::Result<String> {
    let output = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .context("running rustc +nightly -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(|host| host.trim().to_owned())
        .context("rustc +nightly -vV names no host")
}

/// The targets of `fuzz/Cargo.toml`, as `cargo fuzz list` reads them.
fn list_targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let output = cargo_fuzz(fuzz_dir, false, &["list"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo +nightly fuzz list (install it with `cargo install cargo-fuzz`)")?;
    if !output.status.success() {
        bail!("cargo +nightly fuzz list failed ({})", output.status);
    }
    let targets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if targets.is_empty() {
        bail!("fuzz/Cargo.toml lists no targets");
    }
    Ok(targets)
}

/// Runs the built `binary` of `target` for `options.runs` inputs, its log into
/// `logs/<target>.log`.
fn run_target(
    fuzz_dir: &Path,
    binary: &Path,
    logs: &Path,
    target: &str,
    options: &FuzzOptions,
) -> anyhow::Result<Row> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut dirs = vec![format!("corpus/{target}")];
    if fuzz_dir.join("seeds").join(target).is_dir() {
        dirs.push(format!("seeds/{target}"));
    }
    let artifacts = fuzz_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("creating {}", artifacts.display()))?;
    let mut args = vec![
        format!("-runs={}", options.runs),
        format!("-artifact_prefix={}/", artifacts.display()),
    ];
    let dict = format!("dicts/{target}.dict");
    if fuzz_dir.join(&dict).is_file() {
        args.push(format!("-dict={dict}"));
    }
    args.extend(dirs.iter().cloned());

    let log_path = logs.join(format!("{target}.log"));
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "xtask fuzz: {target}: {} runs over {} (log: {})",
        options.runs,
        dirs.join(" and "),
        log_path.display()
    );
    let mut command = if options.jobs_nice {
        let mut command = Command::new("nice");
        command.args(["-n", "19"]).arg(binary);
        command
    } else {
        Command::new(binary)
    };
    let mut child = command
        .args(&args)
        .current_dir(fuzz_dir)
        .stdout(log.try_clone()?)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", binary.display()))?;
    let stderr = child.stderr.take().context("the fuzzer's stderr")?;
    let mut done = None;
    let mut artifact = None;
    let mut failing = false;
    let follow = || -> anyhow::Result<()> {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading the fuzzer's output")?;
            writeln!(log, "{line}").with_context(|| format!("writing {}", log_path.display()))?;
            if let Some(parsed) = parse_done(&line) {
                done = Some(parsed);
            }
            if let Some(path) = parse_artifact(&line) {
                artifact = Some(path);
            }
            failing |= line.contains("ERROR:") || line.contains("panicked");
            // The progress worth seeing live; after a failure, everything.
            if failing || line.contains("INITED") || line.contains("pulse") || line.contains("DONE")
            {
                eprintln!("  {target}: {line}");
            }
        }
        Ok(())
    };
    if let Err(error) = follow() {
        // The fuzzer is not left running unwatched.
        let _ = child.kill();
        let _ = child.wait();
        return Err(error);
    }
    let status = child.wait()?;
    if let Some(artifact) = artifact {
        bail!(
            "the fuzzer failed on an input saved as {} (reproduce: cd fuzz && cargo +nightly fuzz \
             run -O {target} {}; log: {})",
            artifact.display(),
            artifact.display(),
            log_path.display()
        );
    }
    if !status.success() {
        bail!("the fuzzer ended with {status} (log: {})", log_path.display());
    }
    let done = done.with_context(|| {
        format!("no `Done N runs in S second(s)` line in the log {}", log_path.display())
    })?;
    let corpus_files = std::fs::read_dir(&corpus)
        .with_context(|| format!("reading {}", corpus.display()))?
        .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().is_file()))
        .count();
    Ok(Row { target: target.to_owned(), build: Build::of(target), done, corpus_files })
}

/// libFuzzer's last line: `Done 10000000 runs in 123 second(s)`.
fn parse_done(line: &str) -> Option<Done> {
    let rest = line.trim().strip_prefix("Done ")?;
    let (runs, rest) = rest.split_once(" runs in ")?;
    let seconds = rest.strip_suffix(" second(s)")?;
    Some(Done { runs: runs.parse().ok()?, seconds: seconds.parse().ok()? })
}

/// The input libFuzzer saved when a target failed:
/// `artifact_prefix='…'; Test unit written to fuzz/artifacts/t/crash-…`.
fn parse_artifact(line: &str) -> Option<PathBuf> {
    let (_, path) = line.split_once("Test unit written to ")?;
    let path = path.trim();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// The markdown table of `rows`, after the rows of other targets in the `previous` table.
fn merged_table(previous: &str, rows: &[Row]) -> String {
    let mut out =
        "# Fuzzing\n\n`cargo xtask fuzz`: each target's last run, built with `cargo +nightly \
                   fuzz build -O` (with the sanitizer shown), over its corpus and seeds.\n\n\
                   | target | sanitizer | runs | seconds | execs/s | corpus files |\n\
                   |---|---|---:|---:|---:|---:|\n"
            .to_owned();
    for line in previous.lines().filter(|line| line.starts_with("| ")) {
        let target = line.split('|').nth(1).map(str::trim).unwrap_or_default();
        if target != "target" && !rows.iter().any(|row| row.target == target) {
            let _ = writeln!(out, "{line}");
        }
    }
    for row in rows {
        let rate =
            row.done.runs.checked_div(row.done.seconds).map_or("-".to_owned(), |r| r.to_string());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.target,
            row.build.name(),
            row.done.runs,
            row.done.seconds,
            rate,
            row.corpus_files
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_done_line_and_the_artifact_are_read() {
        assert_eq!(
            parse_done("Done 10000000 runs in 123 second(s)"),
            Some(Done { runs: 10_000_000, seconds: 123 })
        );
        assert_eq!(parse_done("#1048576 pulse  cov: 1 ft: 2 corp: 3/4b exec/s: 5"), None);
        assert_eq!(parse_done("Done many runs in 1 second(s)"), None);
        assert_eq!(
            parse_artifact(
                "artifact_prefix='/x/fuzz/artifacts/t/'; Test unit written to \
                 /x/fuzz/artifacts/t/crash-0a1b"
            ),
            Some(PathBuf::from("/x/fuzz/artifacts/t/crash-0a1b"))
        );
        assert_eq!(parse_artifact("INFO: Seed: 1"), None);
    }

    #[test]
    fn the_table_has_a_row_per_target() {
        let rows = [
            Row {
                target: "opus_toc".into(),
                build: Build::of("opus_toc"),
                done: Done { runs: 10_000_000, seconds: 40 },
                corpus_files: 11,
            },
            Row {
                target: "wav_file".into(),
                build: Build::of("wav_file"),
                done: Done { runs: 10_000_000, seconds: 4000 },
                corpus_files: 300,
            },
        ];
        let table = merged_table("", &rows);
        assert!(table.contains("| opus_toc | ASan | 10000000 | 40 | 250000 | 11 |"), "{table}");
        assert!(table.contains("| wav_file | none | 10000000 | 4000 | 2500 | 300 |"), "{table}");

        // A later run of one target replaces its row and keeps the others.
        let later = [Row {
            target: "wav_file".into(),
            build: Build::of("wav_file"),
            done: Done { runs: 100, seconds: 1 },
            corpus_files: 301,
        }];
        let merged = merged_table(&table, &later);
        assert!(merged.contains("| opus_toc | ASan | 10000000 | 40 | 250000 | 11 |"), "{merged}");
        assert!(merged.contains("| wav_file | none | 100 | 1 | 100 | 301 |"), "{merged}");
        assert!(!merged.contains("| 4000 |"), "{merged}");
        assert_eq!(merged.matches("| target |").count(), 1, "{merged}");
    }
}
