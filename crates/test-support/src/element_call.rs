//! Element Call in headless Chromium (`interop/element-call-join.mjs`), started and listened to:
//! its JSON events as they come.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

use crate::{Error, StackInfo, User};

/// How Element Call gets its Matrix session.
#[derive(Debug, Clone, Copy)]
pub enum Login<'a> {
    /// The session of `user` is put into Element Call's storage before the page loads.
    Session(&'a User),
    /// A page that logs Element Call in itself (as `cargo xtask demo` prints).
    Page(&'a str),
    /// A widget host's page (the Element Call host printed by `example-rtc-livekit-join` with
    /// `ELEMENT_CALL_URL`): Element Call runs inside it as the host's account.
    HostPage(&'a str),
}

/// A running Element Call.
#[derive(Debug)]
pub struct ElementCall {
    child: tokio::process::Child,
    events: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl ElementCall {
    /// Opens Element Call of `stack` in `room_id`'s call, logged in as `login` says, with the
    /// driver's other settings (`EXPECT_VIDEO`, `STAY_SECONDS`, `HANGUP`, ... as the script
    /// documents them).
    pub fn start(
        stack: &StackInfo,
        login: Login<'_>,
        room_id: &str,
        settings: &[(&str, String)],
    ) -> Result<Self, Error> {
        let mut command = tokio::process::Command::new("node");
        command
            .arg(stack.interop_dir.join("element-call-join.mjs"))
            .env("EC_URL", &stack.element_call_url)
            .env("ROOM_ID", room_id)
            .env("CHROMIUM", &stack.chromium)
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        match login {
            Login::Session(user) => {
                command
                    .env("USER_ID", &user.user_id)
                    .env("DEVICE_ID", &user.device_id)
                    .env("ACCESS_TOKEN", &user.access_token);
            }
            Login::Page(url) => {
                command.env("PAGE_URL", url);
            }
            Login::HostPage(url) => {
                command.env("HOST_PAGE_URL", url);
            }
        }
        for (name, value) in settings {
            command.env(name, value);
        }
        let mut child = command.spawn().map_err(|e| Error::Transport {
            what: "starting node for Element Call",
            reason: e.to_string(),
        })?;
        let stdout = child.stdout.take().ok_or(Error::Transport {
            what: "Element Call's output",
            reason: "no stdout".into(),
        })?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if event["event"] != "console" {
                        eprintln!("element call: {line}");
                    }
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Self { child, events, seen: Vec::new() })
    }

    /// The next event named `name` (whose `run` is `run`, when given), within `within`. An
    /// `error` event, the end of the run, or the time running out is an `Err` with every event
    /// so far.
    pub async fn wait(
        &mut self,
        name: &str,
        run: Option<u32>,
        within: Duration,
    ) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => return Err(self.failure(&format!("it ended before `{name}`"))),
                Err(_) => return Err(self.failure(&format!("no `{name}` within {within:?}"))),
            };
            self.seen.push(event.clone());
            if event["event"] == "error" {
                return Err(self.failure(&format!("it failed waiting for `{name}`")));
            }
            if event["event"] == name && run.is_none_or(|r| event["run"] == r) {
                return Ok(event);
            }
        }
    }

    /// The events that came since the last call (or the start) without waiting, also kept for
    /// [`Self::finish`] and failure reports.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut fresh = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            self.seen.push(event.clone());
            fresh.push(event);
        }
        fresh
    }

    /// Waits for the run to end; its exit status and every event.
    pub async fn finish(mut self, within: Duration) -> Result<(ExitStatus, Vec<Value>), String> {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => status,
            _ => return Err(self.failure(&format!("it did not end within {within:?}"))),
        };
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(5), self.events.recv()).await
        {
            self.seen.push(event);
        }
        Ok((status, self.seen))
    }

    /// Ends the browser now.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    fn failure(&self, what: &str) -> String {
        let events: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        format!("Element Call: {what}; its events:\n{}", events.join("\n"))
    }
}
