//! Running the binary against the local stack, and looking at what it did there.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matrixrtc_auth::room_service::{Participant, RoomServiceClient};
use matrixrtc_auth::secret::Secret;
use rtc_test_support::{Homeserver, StackInfo, User, encode_path_segment, unique_name};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::Notify;

/// Every variable the program reads: none leaks in from the test's environment.
const PROGRAM_VARIABLES: &[&str] = &[
    "HOMESERVER_URL",
    "MATRIX_USERNAME",
    "MATRIX_PASSWORD",
    "MATRIX_STORE_PASSPHRASE",
    "MATRIX_DEVICE_ID",
    "ROOM_ID",
    "VIA_SERVERS",
    "LIVEKIT_SFU_GET_URL",
    "LIVEKIT_SERVICE_URL",
    "LIVEKIT_TOKEN",
    "V4L2_VIDEO_SOURCE",
    "V4L2_DEVICE",
    "V4L2_WIDTH",
    "V4L2_HEIGHT",
    "VIDEO_FPS",
    "VIDEO_CODEC",
    "VIDEO_MAX_BITRATE",
    "CALL_PRESENCE",
    "MATRIXRTC_MEMBERSHIP",
    "MATRIX_STORE_DIR",
    "ALLOW_INSECURE_HTTP",
    "STATUS_INTERVAL_SECS",
    "MATRIX_RECOVERY_KEY",
    "PER_PARTICIPANT_KEY_RESEND_SECS",
    "PER_PARTICIPANT_KEY_GRACE_PERIOD_MS",
    "AUDIO_SOURCE",
    "RECORD_DIR",
    "RECORD_SNAPSHOT_SECS",
    "ELEMENT_CALL_URL",
    "ELEMENT_CALL_WIDGET_ID",
    "ELEMENT_CALL_PARENT_URL",
    "DELEGATE_DELAYED_LEAVE",
    "RUST_LOG",
];

/// A user of the stack and a call room it is invited to by another user.
pub struct Setup {
    pub stack: StackInfo,
    pub hs: Homeserver,
    /// The bot's account.
    pub bot: User,
    /// Its password (= its local part).
    pub password: String,
    /// The room's creator, who invited the bot.
    pub owner: User,
    pub room_id: String,
    /// A fresh store directory for this test.
    pub store: PathBuf,
}

impl Setup {
    pub async fn new(prefix: &str) -> Self {
        Self::with_room(prefix, false).await
    }

    /// The same with an encrypted room (Element Call encrypts the call's media there).
    pub async fn encrypted(prefix: &str) -> Self {
        Self::with_room(prefix, true).await
    }

    async fn with_room(prefix: &str, encrypted: bool) -> Self {
        let stack = StackInfo::require();
        let hs = Homeserver::new(&stack);
        let owner = hs.register_unique(&format!("{prefix}owner")).await.unwrap();
        let bot = hs.register_unique(&format!("{prefix}bot")).await.unwrap();
        let password = localpart(&bot.user_id);
        let room_id = if encrypted {
            hs.create_encrypted_call_room(&owner, &[&bot]).await.unwrap()
        } else {
            hs.create_call_room(&owner, &[&bot]).await.unwrap()
        };
        let store = std::env::temp_dir().join(unique_name("rtc-join-store"));
        Self { stack, hs, bot, password, owner, room_id, store }
    }

    /// The environment of a bot that publishes red frames and is always in the call.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HOMESERVER_URL", self.stack.homeserver_url.clone()),
            ("MATRIX_USERNAME", self.password.clone()),
            ("MATRIX_PASSWORD", self.password.clone()),
            ("ROOM_ID", self.room_id.clone()),
            ("V4L2_VIDEO_SOURCE", "test_red".into()),
            ("CALL_PRESENCE", "always".into()),
            ("MATRIX_STORE_DIR", self.store.display().to_string()),
            ("STATUS_INTERVAL_SECS", "2".into()),
        ]
    }

    /// [`Setup::env`] changed by `overrides`; an empty value removes the variable.
    pub fn env_with(&self, overrides: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut env = self.env();
        for (name, value) in overrides {
            env.retain(|(n, _)| n != name);
            if !value.is_empty() {
                env.push((name, value.clone()));
            }
        }
        env
    }

    /// The content of the bot's state membership for `device` (`{}` or absent after a leave).
    pub async fn membership(&self, device: &str) -> Value {
        let key = format!("_{}_{device}_m.call", self.bot.user_id);
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/org.matrix.msc3401.call.member/{}",
            encode_path_segment(&self.room_id),
            encode_path_segment(&key)
        );
        self.hs.get(&self.owner, &path).await.unwrap_or(Value::Null)
    }

    /// The participants of the call's LiveKit room on the stack's first SFU.
    pub async fn livekit_participants(&self) -> Vec<Participant> {
        let client = RoomServiceClient::new(
            &self.stack.livekit_url.parse().unwrap(),
            self.stack.livekit_api_key.clone(),
            Secret::new(self.stack.livekit_api_secret.clone()),
            Duration::from_secs(10),
        )
        .unwrap();
        let name = matrixrtc_identity::livekit_room_alias(&self.room_id, "m.call#ROOM");
        client.list_participants(&name).await.unwrap_or_default()
    }

    /// Waits until `check` holds for the LiveKit participants.
    pub async fn wait_participants(
        &self,
        within: Duration,
        check: impl Fn(&[Participant]) -> bool,
    ) {
        if let Err(participants) = self.participants_within(within, check).await {
            panic!("LiveKit participants not as expected within {within:?}: {participants}");
        }
    }

    /// Whether `check` comes to hold for the LiveKit participants within `within`; the last
    /// participants seen (identity, tracks) when it does not.
    pub async fn participants_within(
        &self,
        within: Duration,
        check: impl Fn(&[Participant]) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let participants = self.livekit_participants().await;
            if check(&participants) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let seen: Vec<_> =
                    participants.iter().map(|p| (&p.identity, p.tracks.len())).collect();
                return Err(format!("{seen:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts the program with `env` and waits until it is in the call (membership, first frame)
    /// and on LiveKit; the program and its device.
    pub async fn start_in_the_call(&self, env: &[(&str, String)]) -> (Bot, String) {
        const WAIT: Duration = Duration::from_secs(60);
        let bot = Bot::start(env);
        bot.wait_line(WAIT, |l| l.contains("milestone=\"membership\"")).await;
        bot.wait_line(WAIT, |l| l.contains("milestone=\"first_frame\"")).await;
        let device = field(&bot.wait_line(WAIT, |l| l.contains("logged in user=")).await, "device")
            .unwrap()
            .to_owned();
        let identity = format!("{}:{device}", self.bot.user_id);
        self.wait_participants(WAIT, |p| p.iter().any(|p| p.identity == identity)).await;
        (bot, device)
    }

    /// Waits until the bot's membership of `device` is gone from the room state.
    pub async fn wait_membership_gone(&self, device: &str, within: Duration) -> Duration {
        let started = Instant::now();
        while self.membership(device).await.get("application").is_some() {
            assert!(started.elapsed() < within, "the membership of {device} is still there");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

pub fn localpart(user_id: &str) -> String {
    user_id.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned()
}

/// The program, running, with its log (stderr) collected line by line.
/// A command line that runs the program instead of this package's build: a runner and a
/// binary, such as `qemu-aarch64 -L / target/aarch64-unknown-linux-gnu/debug/
/// example-rtc-livekit-join` (`cargo xtask cross aarch64 --call` runs the call tests so).
pub const PROGRAM_COMMAND_ENV: &str = "RTC_JOIN_PROGRAM_COMMAND";

/// The program's command: [`PROGRAM_COMMAND_ENV`] when set, else this package's binary.
fn program_command() -> tokio::process::Command {
    let line = std::env::var(PROGRAM_COMMAND_ENV).unwrap_or_default();
    let mut words = line.split_whitespace();
    match words.next() {
        Some(program) => {
            eprintln!("running the program as `{line}`");
            let mut command = tokio::process::Command::new(program);
            command.args(words);
            command
        }
        None => tokio::process::Command::new(env!("CARGO_BIN_EXE_example-rtc-livekit-join")),
    }
}

/// Lines the program printed on stdout start with this in [`Bot::log`].
pub const STDOUT_MARK: &str = "[stdout] ";

pub struct Bot {
    child: tokio::process::Child,
    reader: Option<tokio::task::JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
    news: Arc<Notify>,
    pub started: Instant,
}

impl Bot {
    /// Starts the program with exactly `env` (and `RUST_LOG` unless given).
    pub fn start(env: &[(&str, String)]) -> Self {
        Self::start_with_args(env, &[])
    }

    /// Starts the program with exactly `env` (and `RUST_LOG` unless given) and `args`.
    pub fn start_with_args(env: &[(&str, String)], args: &[&str]) -> Self {
        let mut command = program_command();
        command.args(args);
        for name in PROGRAM_VARIABLES {
            command.env_remove(name);
        }
        command.env("RUST_LOG", "info,livekit_str0m=debug");
        for (name, value) in env {
            command.env(name, value);
        }
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the program starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let news = Arc::new(Notify::new());
        // The log (stderr), and what the program prints for its user (stdout, marked).
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (sink, notify) = (lines.clone(), news.clone());
        let reader = tokio::spawn(async move {
            let (mut err_open, mut out_open) = (true, true);
            while err_open || out_open {
                let line = tokio::select! {
                    line = stderr.next_line(), if err_open => match line {
                        Ok(Some(line)) => line,
                        _ => { err_open = false; continue; }
                    },
                    line = stdout.next_line(), if out_open => match line {
                        Ok(Some(line)) => format!("{STDOUT_MARK}{line}"),
                        _ => { out_open = false; continue; }
                    },
                };
                sink.lock().unwrap().push(line);
                notify.notify_waiters();
            }
            notify.notify_waiters();
        });
        Self { child, reader: Some(reader), lines, news, started }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The first log line that `check` accepts, waiting up to `within`.
    pub async fn wait_line(&self, within: Duration, check: impl Fn(&str) -> bool) -> String {
        self.wait_line_since(0, within, check).await
    }

    /// How many lines the log has now (for [`wait_line_since`](Self::wait_line_since)).
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The first log line after the first `mark` lines that `check` accepts.
    pub async fn wait_line_since(
        &self,
        mark: usize,
        within: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.news.notified();
            if let Some(line) = self.lines.lock().unwrap().iter().skip(mark).find(|l| check(l)) {
                return line.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no such log line within {within:?}; the log:\n{}", self.log());
            }
        }
    }

    /// Whether a log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.id().expect("still running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    }

    /// Waits for the exit (and the end of its log), up to `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                panic!("the program did not exit within {within:?}; the log:\n{}", self.log())
            }
        };
        // The rest of its log is still in the pipe.
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status
    }

    /// The last log line (the one-line reason of a failure).
    pub fn last_line(&self) -> String {
        self.lines.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

/// A value of `key=value` in a log line (fmt's field format), quotes removed.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        &quoted[..quoted.find('"')?]
    } else {
        rest.split_whitespace().next()?
    };
    Some(value)
}

/// A reverse proxy in front of `upstream` that answers `status` and `body` for every path that
/// starts with one of `blocked` (a homeserver without some endpoint, one that refuses a token).
/// It drops `well_known` from login answers, so that clients keep using the proxy (matrix-sdk
/// moves to the homeserver a login answer names). Returns its base URL; it runs until the
/// test's runtime ends.
pub async fn filtering_proxy(upstream: &str, blocked: &[&str], status: u16, body: &str) -> String {
    let proxy = FilteringProxy::start(upstream, status, body).await;
    proxy.block(blocked);
    proxy.url
}

/// [`filtering_proxy`] whose blocked paths change while it runs (`block(&["/"])`: a homeserver
/// that answers nothing but `status`).
pub struct FilteringProxy {
    /// Its base URL.
    pub url: String,
    blocked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FilteringProxy {
    pub async fn start(upstream: &str, status: u16, body: &str) -> Self {
        use axum::body::Body;
        use axum::extract::Request;
        use axum::response::Response;

        let upstream = upstream.trim_end_matches('/').to_owned();
        let blocked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let answer = body.to_owned();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let shared = blocked.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let (upstream, blocked, answer, http) =
                (upstream.clone(), shared.clone(), answer.clone(), http.clone());
            async move {
                let path = request.uri().path().to_owned();
                if blocked.lock().unwrap().iter().any(|b| path.starts_with(b.as_str())) {
                    return Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(answer))
                        .unwrap();
                }
                let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
                let method =
                    reqwest::Method::from_bytes(request.method().as_str().as_bytes()).unwrap();
                let mut forwarded = http.request(method, format!("{upstream}{path}{query}"));
                for (name, value) in request.headers() {
                    if name != "host" {
                        forwarded = forwarded.header(name.as_str(), value.as_bytes());
                    }
                }
                let body = axum::body::to_bytes(request.into_body(), 16 * 1024 * 1024)
                    .await
                    .unwrap_or_default();
                match forwarded.body(body).send().await {
                    Ok(response) => {
                        let mut answer = Response::builder().status(response.status().as_u16());
                        for (name, value) in response.headers() {
                            if name != "transfer-encoding" && name != "content-length" {
                                answer = answer.header(name.as_str(), value.as_bytes());
                            }
                        }
                        let mut bytes = response.bytes().await.unwrap_or_default().to_vec();
                        if path.ends_with("/login")
                            && let Ok(mut json) = serde_json::from_slice::<Value>(&bytes)
                            && let Some(object) = json.as_object_mut()
                        {
                            object.remove("well_known");
                            bytes = serde_json::to_vec(&json).unwrap();
                        }
                        answer.body(Body::from(bytes)).unwrap()
                    }
                    Err(_) => Response::builder().status(502).body(Body::empty()).unwrap(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url: format!("http://{address}"), blocked }
    }

    /// Answers every path starting with one of `prefixes` with the status (and nothing else).
    pub fn block(&self, prefixes: &[&str]) {
        *self.blocked.lock().unwrap() = prefixes.iter().map(|p| (*p).to_owned()).collect();
    }
}

/// A port on 127.0.0.1 where nothing listens (a moment ago).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
