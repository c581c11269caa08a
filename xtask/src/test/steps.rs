//! How long each step of `cargo xtask test` took, printed at its end.

use std::time::{Duration, Instant};

/// How long each step of the run took.
pub(super) struct Steps {
    started: Instant,
    done: Vec<(&'static str, Duration, bool)>,
}

impl Steps {
    pub(super) fn new() -> Self {
        Self { started: Instant::now(), done: Vec::new() }
    }

    /// Runs `step`, noting how long it took and whether it worked.
    pub(super) async fn time<T>(
        &mut self,
        name: &'static str,
        step: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        eprintln!("==> step: {name}");
        let started = Instant::now();
        let outcome = step.await;
        self.done.push((name, started.elapsed(), outcome.is_ok()));
        outcome
    }

    /// Notes a step that ran beside the others.
    pub(super) fn record(&mut self, name: &'static str, took: Duration, worked: bool) {
        self.done.push((name, took, worked));
    }

    pub(super) fn print(&self) {
        eprintln!("cargo xtask test, the time of each step:");
        for (name, took, worked) in &self.done {
            let failed = if *worked { "" } else { "  (failed)" };
            eprintln!("  {name:<22}{:>7.0} s{failed}", took.as_secs_f64());
        }
        eprintln!("  {:<22}{:>7.0} s", "all, from the start", self.started.elapsed().as_secs_f64());
    }
}
