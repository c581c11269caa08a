//! `cargo xtask demo`: the local stack, a Rust bot in a call publishing the moving test pattern
//! and a 440 Hz tone, and one URL to watch (and hear) it in Element Call.
//!
//! The demo registers two accounts on the stack's homeserver, the bot and you, and a call room
//! of yours the bot is invited to. It starts `example-rtc-livekit-join` (the seed's program,
//! configured through the seed's environment variables) in the room, always in the call. The URL
//! it prints opens a page on Element Call's own origin that logs Element Call in as you and
//! leads into the room: click "Join call" and the bot's tile is there. `--headless` opens that
//! URL in Chromium instead, joins, checks that the bot's tile shows the pattern's colour bars and
//! that its audio carries the tone, keeps a screenshot in `test-artifacts/demo.png`, and ends.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rtc_test_support::{ElementCall, Homeserver, Login, StackInfo, unique_name};
use serde_json::{Value, json};

use crate::devstack::{self, Layout};

/// Options of `cargo xtask demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoOptions {
    /// Open the URL in headless Chromium, check the bot's tile, take a screenshot, and stop.
    #[arg(long)]
    headless: bool,
}

impl DemoOptions {
    /// The demo as CI runs it.
    pub(crate) fn headless() -> Self {
        Self { headless: true }
    }
}

/// The bot's program.
const PROGRAM: &str = "example-rtc-livekit-join";

/// Starts the stack and the bot, then shows the way in.
pub(crate) async fn run(options: &DemoOptions) -> anyhow::Result<()> {
    let layout = Layout::new();
    devstack::ensure_build_packages()?;
    let stack = devstack::up().await?;
    devstack::print_status(&stack);
    println!();

    let program = build_program(&layout)?;
    let hs = Homeserver::new(&stack);
    let you = hs.register_unique("you").await?;
    let bot = hs.register_unique("bot").await?;
    let spare = hs.register_unique("yourbot").await?;
    let room_id = hs.create_call_room(&you, &[&bot, &spare]).await?;
    println!("registered {} (you) and {} (the bot); call room {room_id}", you.user_id, bot.user_id);

    let demo_dir = layout.root.join("demo");
    std::fs::create_dir_all(&demo_dir)?;
    let bot_log = demo_dir.join("bot.log");
    let mut child = program_in_room(&mut Command::new(&program), &stack, &bot, &room_id)
        .env("V4L2_VIDEO_SOURCE", "pattern")
        .env("V4L2_WIDTH", "1280")
        .env("V4L2_HEIGHT", "720")
        .env("AUDIO_SOURCE", "tone")
        .env("CALL_PRESENCE", "always")
        .env("MATRIX_STORE_DIR", demo_dir.join("store"))
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let result = async {
        let log = forward_log(&mut child, &bot_log, !options.headless)?;
        wait_for_line(&log, "milestone=\"first_frame\"", Duration::from_secs(60))
            .await
            .context("the bot did not start publishing; its log is in .devstack/demo/bot.log")?;

        let page = login_page(&stack, &you_session(&hs, &you).await?, &room_id)?;
        println!();
        println!(
            "The bot is in the call, publishing a moving test pattern and a 440 Hz tone. Watch and \
             hear it in Element Call:"
        );
        println!();
        println!("    {page}");
        println!();
        println!("(that page logs Element Call in as {}; then click \"Join call\")", you.user_id);
        let spare_name =
            spare.user_id.trim_start_matches('@').split(':').next().unwrap_or_default();
        println!();
        println!("To put a second bot into the call yourself, with the seed's variables:");
        println!();
        println!("    HOMESERVER_URL={} \\", stack.homeserver_url);
        println!("    MATRIX_USERNAME={spare_name} MATRIX_PASSWORD={spare_name} \\");
        println!("    ROOM_ID='{room_id}' \\");
        println!("    V4L2_VIDEO_SOURCE=test_red RUST_LOG=info \\");
        println!("    cargo run -p example-rtc-livekit-join");
        println!();
        println!(
            "Or be that account in the call yourself, in a second browser tab, through Element Call \
             hosted by the program (it prints the page to open):"
        );
        println!();
        println!("    HOMESERVER_URL={} \\", stack.homeserver_url);
        println!("    MATRIX_USERNAME={spare_name} MATRIX_PASSWORD={spare_name} \\");
        println!("    ROOM_ID='{room_id}' \\");
        println!("    ELEMENT_CALL_URL={} RUST_LOG=info \\", stack.element_call_url);
        println!("    cargo run -p example-rtc-livekit-join --features experimental-widgets");
        println!();
        if options.headless {
            watch_headless(&stack, &page, &room_id, &layout).await
        } else {
            println!("Press Ctrl-C to stop the bot; the stack keeps running.");
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
    }
    .await;
    stop(&mut child);
    println!("The stack keeps running; stop it with `cargo xtask devstack down`.");
    result
}

/// Builds the program (debug, as the tests build it) and returns its path.
pub(crate) fn build_program(layout: &Layout) -> anyhow::Result<std::path::PathBuf> {
    let status = crate::cargo::build_programs(PROGRAM)
        .current_dir(&layout.workspace)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building {PROGRAM} failed");
    }
    Ok(layout.target().join("debug").join(PROGRAM))
}

/// A session of yours for Element Call, on a device of its own.
async fn you_session(hs: &Homeserver, you: &rtc_test_support::User) -> anyhow::Result<Value> {
    let name = you.user_id.trim_start_matches('@').split(':').next().unwrap_or_default();
    let session = hs.login(name, name, "ELEMENTCALL").await?;
    Ok(json!({
        "user_id": session.user_id,
        "device_id": session.device_id,
        "access_token": session.access_token,
        "passwordlessUser": false,
    }))
}

/// Writes a page on Element Call's origin that stores `session` where Element Call reads it
/// and goes to the room; returns its URL. Its name is random: it holds an access token (of a
/// throwaway account, on 127.0.0.1).
fn login_page(stack: &StackInfo, session: &Value, room_id: &str) -> anyhow::Result<String> {
    let site = stack.state_dir.join("element-call/site");
    let name = format!("{}.html", unique_name("demo"));
    let page = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Joining the demo call</title>\n\
         <script>\n\
         localStorage.setItem(\"matrix-auth-store\", JSON.stringify({session}));\n\
         location.replace(\"/room#?roomId=\" + encodeURIComponent({room}));\n\
         </script>\n",
        room = serde_json::to_string(room_id)?,
    );
    std::fs::write(site.join(&name), page).context("writing the demo's login page")?;
    Ok(format!("{}/{name}", stack.element_call_url))
}

/// `command` made the program in `room_id` as the stack's user `user` (whose password is its
/// local part): nothing of our environment but `PATH`, `RUST_LOG=info`, no stdin or stdout, its
/// log (stderr) piped for [`forward_log`]. Callers add what it publishes.
pub(crate) fn program_in_room<'a>(
    command: &'a mut Command,
    stack: &StackInfo,
    user: &rtc_test_support::User,
    room_id: &str,
) -> &'a mut Command {
    let localpart = user.user_id.trim_start_matches('@').split(':').next().unwrap_or_default();
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOMESERVER_URL", &stack.homeserver_url)
        .env("MATRIX_USERNAME", localpart)
        .env("MATRIX_PASSWORD", localpart)
        .env("ROOM_ID", room_id)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
}

/// Copies the bot's log to `path` (and to the terminal when `echo`), line by line, and returns
/// the lines so far as they come.
pub(crate) fn forward_log(
    child: &mut Child,
    path: &Path,
    echo: bool,
) -> anyhow::Result<std::sync::Arc<std::sync::Mutex<Vec<String>>>> {
    let stderr = child.stderr.take().context("the bot's log")?;
    let mut file = std::fs::File::create(path)?;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            use std::io::Write as _;
            let _ = writeln!(file, "{line}");
            if echo {
                eprintln!("bot | {line}");
            }
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    Ok(lines)
}

pub(crate) async fn wait_for_line(
    lines: &std::sync::Mutex<Vec<String>>,
    text: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !lines.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|l| l.contains(text)) {
        if started.elapsed() > within {
            bail!("no `{text}` within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Opens the page in headless Chromium, joins, and checks the bot's tile.
async fn watch_headless(
    stack: &StackInfo,
    page: &str,
    room_id: &str,
    layout: &Layout,
) -> anyhow::Result<()> {
    let artifacts = layout.workspace.join("test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let screenshot = artifacts.join("demo.png");
    let browser = ElementCall::start(
        stack,
        Login::Page(page),
        room_id,
        &[
            ("EXPECT_VIDEO", "bars".into()),
            ("EXPECT_TONE", "440".into()),
            ("STAY_SECONDS", "30".into()),
            ("SCREENSHOT", screenshot.display().to_string()),
        ],
    )?;
    let (status, events) =
        browser.finish(Duration::from_secs(120)).await.map_err(anyhow::Error::msg)?;
    let seen = events.iter().find(|e| e["event"] == "video-seen");
    let heard = events.iter().find(|e| e["event"] == "tone-heard");
    match seen {
        Some(seen) if status.success() => {
            println!(
                "headless check: Element Call shows the bot's colour bars at {}x{} and hears its \
                 tone ({} dB above the rest); screenshot in {}",
                seen["width"],
                seen["height"],
                heard.map_or(Value::Null, |h| h["margin_db"].clone()),
                screenshot.display()
            );
            Ok(())
        }
        _ => bail!(
            "Element Call did not show the bot's tile:\n{}",
            events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
        ),
    }
}

/// Stops the bot (SIGTERM: it leaves the call), then makes sure it is gone.
pub(crate) fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            println!("the bot left the call");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
