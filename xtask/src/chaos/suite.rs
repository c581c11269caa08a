//! The chaos suite: the program and Element Call in one call while faults are injected one after
//! another, each followed by the checks that it recovered and left nothing behind.
//!
//! Every scenario gets a fresh room, a fresh program (in the network namespace, behind the
//! relay) and a fresh Element Call watching the program's moving test pattern. Per scenario:
//!
//! 1. baseline: Element Call shows the program's video, the relay has seen its media rate;
//! 2. the fault, then its end (the service back, the path restored, the process continued),
//!    with the program's upstream datagram rate through the relay followed all along;
//! 3. recovery: the program's tracks on the SFU again (*media back*), Element Call showing its
//!    moving video again (a new Element Call when the fault took its own connection down),
//!    and exactly one membership of the program and one LiveKit participant;
//! 4. what is left behind: open descriptors against the baseline, and after SIGTERM no
//!    membership, no LiveKit participant and no delayed event of the program.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use matrixrtc_auth::room_service::RoomServiceClient;
use matrixrtc_auth::secret::Secret;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rtc_test_support::{ElementCall, Homeserver, Login, StackInfo, User, encode_path_segment};
use serde_json::Value;

use super::netns::Namespace;
use super::relay::{Relay, RelayHandle};
use crate::demo::{forward_log, stop};
use crate::devstack::{self, Layout, Service};
use crate::soak::open_fds;

/// How long the program may take to be in the call and seen by Element Call.
const JOIN_WITHIN: Duration = Duration::from_secs(90);
/// How long recovery may take after a fault ends.
const RECOVER_WITHIN: Duration = Duration::from_secs(90);
/// How often the relay's counters are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The window the media rate is taken over.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// More open descriptors than at the baseline that still count as none leaked.
const FD_SLACK: usize = 4;

/// A fault and how long it lasts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// A service of the stack killed (SIGKILL) for this long, then started again.
    Kill(Service, Duration),
    /// The authorization service killed, then LiveKit killed and restarted so that the program
    /// has to connect anew while the service is away, for this long.
    AuthAway(Duration),
    /// Datagram loss (and one-way delay) on the program's path for this long.
    Lossy { loss: f64, delay: Duration, lasting: Duration },
    /// The program's path cut for this long, then restored.
    Cut(Duration),
    /// The program stopped (SIGSTOP) for this long, then continued.
    Stop(Duration),
}

impl Fault {
    fn describe(self) -> String {
        match self {
            Self::Kill(service, down) => {
                format!("{} killed for {} s", service.name(), down.as_secs())
            }
            Self::AuthAway(down) => {
                format!("matrixrtc-auth killed, LiveKit restarted meanwhile, {} s", down.as_secs())
            }
            Self::Lossy { loss, delay, lasting } => format!(
                "{:.0} % loss{} for {} s",
                loss * 100.0,
                if delay.is_zero() {
                    String::new()
                } else {
                    format!(", {} ms delay", delay.as_millis())
                },
                lasting.as_secs()
            ),
            Self::Cut(down) => format!("path cut for {} s", down.as_secs()),
            Self::Stop(down) => format!("SIGSTOP for {} s", down.as_secs()),
        }
    }

    /// Whether the fault takes Element Call's own LiveKit connection down too.
    fn hits_element_call(self) -> bool {
        matches!(self, Self::Kill(Service::Livekit, _) | Self::AuthAway(_))
    }

    /// The share of its baseline the program's upstream must keep all through the fault, for
    /// faults its media must ride out (a homeserver outage, loss).
    fn upstream_floor(self) -> Option<f64> {
        matches!(self, Self::Kill(Service::Synapse, _) | Self::Lossy { .. }).then_some(0.5)
    }

    /// The longest Element Call may go without the program's moving video during the fault
    /// (frames lost to loss freeze the picture until a retransmission or a key frame comes).
    /// Only moderate loss has a bound: at 20 % with 200 ms each way the picture moves in bursts
    /// (the gaps are reported), and during a homeserver outage Element Call, a Matrix client
    /// too, loses the call itself.
    fn max_gap(self) -> Option<Duration> {
        match self {
            // Measured: up to 5 s once a minute at 5 % (a key frame that takes a few
            // retransmission rounds).
            Self::Lossy { loss, .. } if loss <= 0.05 => Some(Duration::from_secs(8)),
            _ => None,
        }
    }

    /// Whether the program's upstream through the relay says anything during the fault (not
    /// when the SFU is down: datagrams to a dead port still leave).
    fn upstream_tells(self) -> bool {
        !matches!(self, Self::Kill(Service::Livekit, _) | Self::AuthAway(_))
    }

    /// Whether the homeserver can be asked about the membership during the fault.
    fn membership_observable(self) -> bool {
        !matches!(self, Self::Kill(Service::Synapse, _))
    }
}

/// The scenarios, in order; `short` for CI.
pub(crate) fn scenarios(short: bool) -> Vec<(&'static str, Fault)> {
    let lossy = if short { Duration::from_secs(15) } else { Duration::from_secs(60) };
    vec![
        ("synapse", Fault::Kill(Service::Synapse, Duration::from_secs(30))),
        ("livekit", Fault::Kill(Service::Livekit, Duration::from_secs(5))),
        ("auth", Fault::AuthAway(Duration::from_secs(if short { 10 } else { 20 }))),
        ("loss5", Fault::Lossy { loss: 0.05, delay: Duration::ZERO, lasting: lossy }),
        ("loss20", Fault::Lossy { loss: 0.20, delay: Duration::from_millis(200), lasting: lossy }),
        ("cut", Fault::Cut(Duration::from_secs(20))),
        ("sigstop", Fault::Stop(Duration::from_secs(30))),
    ]
}

/// What one scenario measured.
#[derive(Debug, Default)]
struct Row {
    name: &'static str,
    fault: String,
    /// Fault end → the SFU lists the program's participant with its tracks again.
    media_back: Option<Duration>,
    /// The lowest upstream rate of the program during the fault, as a share of its baseline
    /// (`None` when it says nothing).
    lowest_upstream: Option<f64>,
    /// Fault end → Element Call shows the program's video again (`None`: never went away).
    shown_again: Option<Duration>,
    /// The longest time Element Call did not show the video.
    longest_gap: Duration,
    /// Whether the program's membership went away during the fault (its delayed leave fired);
    /// `None` when the homeserver could not be asked.
    left_during: Option<bool>,
    /// The program's open descriptors at the baseline and after recovery.
    fds: (usize, usize),
    /// What went wrong; empty when everything held.
    problems: Vec<String>,
}

/// Everything a scenario needs.
struct Suite<'a> {
    stack: &'a mut StackInfo,
    program: &'a Path,
    namespace: &'a Namespace,
    relay: RelayHandle,
    dir: PathBuf,
}

/// Runs `scenarios` (all when `only` is empty) on the running stack.
pub(crate) async fn run_all(
    layout: &Layout,
    stack: &mut StackInfo,
    program: &Path,
    short: bool,
    only: &[String],
) -> anyhow::Result<()> {
    let namespace = Namespace::create()?;
    let tcp =
        [port(&stack.homeserver_url)?, port(&stack.auth_service_url)?, port(&stack.livekit_url)?];
    let relay = Relay::start(&namespace, &tcp, &[stack.livekit_udp_port], 0x00c4_a05e).await?;
    let dir = layout.root.join("chaos");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut suite = Suite { stack, program, namespace: &namespace, relay: relay.handle(), dir };
    let mut rows = Vec::new();
    for (name, fault) in scenarios(short) {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("chaos: {name}: {}", fault.describe());
        let row = match suite.scenario(name, fault).await {
            Ok(row) => row,
            Err(error) => Row {
                name,
                fault: fault.describe(),
                problems: vec![format!("{error:#}")],
                ..Row::default()
            },
        };
        eprintln!(
            "chaos: {name}: {}",
            if row.problems.is_empty() {
                "recovered, nothing left behind".to_owned()
            } else {
                row.problems.join("; ")
            }
        );
        // A scenario that failed midway may leave a service down: bring it back.
        suite.heal().await?;
        rows.push(row);
    }
    let table = table(&rows);
    println!("{table}");
    let artifacts = layout.workspace.join("test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    std::fs::write(artifacts.join(if short { "chaos-short.md" } else { "chaos.md" }), &table)?;
    let failed: Vec<&str> =
        rows.iter().filter(|r| !r.problems.is_empty()).map(|r| r.name).collect();
    if !failed.is_empty() {
        bail!("chaos: {} did not recover cleanly (logs in .devstack/chaos/)", failed.join(", "));
    }
    Ok(())
}

fn port(url: &str) -> anyhow::Result<u16> {
    reqwest::Url::parse(url)?.port().with_context(|| format!("{url} has no port"))
}

impl Suite<'_> {
    async fn scenario(&mut self, name: &'static str, fault: Fault) -> anyhow::Result<Row> {
        let mut row = Row { name, fault: fault.describe(), ..Row::default() };
        let hs = Homeserver::new(self.stack);
        let bot_user = hs.register_unique("chaosbot").await?;
        let peer = hs.register_unique("chaospeer").await?;
        let room_id = hs.create_call_room(&peer, &[&bot_user]).await?;
        hs.join(&bot_user, &room_id).await?;

        let mut watcher = Some(self.element_call(&peer, &room_id)?);
        let (mut bot, log) = self.start_program(name, &bot_user, &room_id)?;
        let result = async {
            let device = wait_device(&log).await?;
            let ec = watcher.as_mut().context("Element Call")?;
            wait_event(ec, "video-on", JOIN_WITHIN)
                .await
                .context("Element Call never showed the program's video")?;
            let mut media = Media::new(self.relay.clone());
            tokio::time::sleep(Duration::from_secs(5)).await;
            media.sample_for(Duration::from_secs(3)).await;
            let baseline = media.rate();
            if baseline < 10.0 {
                bail!("the program sends {baseline:.0} datagrams/s before the fault");
            }
            row.fds.0 = open_fds(bot.id())?;
            let mut gaps = Gaps { on: true, ..Gaps::default() };
            gaps.take(ec);

            let membership =
                Membership { hs: &hs, room_id: &room_id, user: &bot_user, device: &device };
            let fault_start = Instant::now();
            let during_from = media.samples.len();
            let fault_end =
                self.inject(fault, &bot, &mut media, &mut gaps, ec, &membership, &mut row).await?;
            let lowest = media.lowest_rate_since(during_from) / baseline;
            row.lowest_upstream = fault.upstream_tells().then_some(lowest);
            if let Some(floor) = fault.upstream_floor()
                && lowest < floor
            {
                row.problems.push(format!(
                    "the program's upstream fell to {:.0} % of its baseline during the fault",
                    lowest * 100.0
                ));
            }
            // Recovery: the program's tracks on the SFU, then Element Call.
            let identity = format!("{}:{device}", bot_user.user_id);
            row.media_back = self.tracks_back(&room_id, &identity, fault_end).await;
            if row.media_back.is_none() {
                row.problems.push(format!(
                    "the program's tracks were not on the SFU within {RECOVER_WITHIN:?}"
                ));
            }
            if fault.hits_element_call() {
                // Its own connection went down with the SFU: a fresh Element Call must see the
                // program.
                if let Some(old) = watcher.take() {
                    old.stop().await;
                }
                let fresh = watcher.insert(self.element_call(&peer, &room_id)?);
                match wait_event(fresh, "video-on", RECOVER_WITHIN).await {
                    Ok(_) => row.shown_again = Some(fault_end.elapsed()),
                    Err(error) => row
                        .problems
                        .push(format!("a new Element Call does not show the program: {error:#}")),
                }
            } else {
                let ec = watcher.as_mut().context("Element Call")?;
                gaps.take(ec);
                if !gaps.on {
                    match wait_event(ec, "video-on", RECOVER_WITHIN).await {
                        Ok(event) => {
                            gaps.apply(&event);
                            row.shown_again = Some(fault_end.elapsed());
                        }
                        Err(error) => row.problems.push(format!(
                            "Element Call does not show the program again: {error:#}"
                        )),
                    }
                } else if gaps.went_off_since(fault_start) {
                    row.shown_again =
                        gaps.back_at.map(|at| at.saturating_duration_since(fault_end));
                }
                gaps.take(ec);
                row.longest_gap = gaps.longest;
                if let Some(max) = fault.max_gap()
                    && gaps.longest > max
                {
                    row.problems.push(format!(
                        "Element Call went {:.1} s without the moving video (at most {} s allowed)",
                        gaps.longest.as_secs_f64(),
                        max.as_secs()
                    ));
                }
            }
            // Exactly one membership and one participant.
            let members = membership.count_within(RECOVER_WITHIN, |n| n == 1).await?;
            if members != 1 {
                row.problems.push(format!("{members} memberships of the program after recovery"));
            }
            let participants = self
                .participants_within(&room_id, &identity, Duration::from_secs(30), |n| n == 1)
                .await;
            if participants != 1 {
                row.problems.push(format!(
                    "{participants} LiveKit participants of the program after recovery"
                ));
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            row.fds.1 = open_fds(bot.id())?;
            if row.fds.1 > row.fds.0 + FD_SLACK {
                row.problems.push(format!("open descriptors {} → {}", row.fds.0, row.fds.1));
            }

            // Nothing left after it leaves.
            stop(&mut bot);
            if membership.count_within(Duration::from_secs(5), |n| n == 0).await? != 0 {
                row.problems.push("a membership is left after SIGTERM".into());
            }
            if self
                .participants_within(&room_id, &identity, Duration::from_secs(15), |n| n == 0)
                .await
                != 0
            {
                row.problems.push("a LiveKit participant is left after SIGTERM".into());
            }
            let delayed = delayed_events(&hs, &bot_user).await?;
            if delayed != 0 {
                row.problems.push(format!(
                    "{delayed} delayed events of the program are left after SIGTERM"
                ));
            }
            anyhow::Ok(())
        }
        .await;
        if bot.try_wait().ok().flatten().is_none() {
            stop(&mut bot);
        }
        if let Some(watcher) = watcher {
            watcher.stop().await;
        }
        drop(log);
        result?;
        Ok(row)
    }

    /// Injects `fault`; returns when it ended (the moment the service is back, the path
    /// restored, the process continued).
    #[allow(clippy::too_many_arguments)]
    async fn inject(
        &mut self,
        fault: Fault,
        bot: &Child,
        media: &mut Media,
        gaps: &mut Gaps,
        watcher: &mut ElementCall,
        membership: &Membership<'_>,
        row: &mut Row,
    ) -> anyhow::Result<Instant> {
        match fault {
            Fault::Kill(service, down) => {
                devstack::kill_service(self.stack, service)?;
                // Without the homeserver the membership cannot be read, only the media.
                let membership = fault.membership_observable().then_some(membership);
                observe(down, media, gaps, watcher, membership, &mut row.left_during).await;
                devstack::restart_service(self.stack, service).await?;
            }
            Fault::AuthAway(down) => {
                devstack::kill_service(self.stack, Service::Auth)?;
                devstack::kill_service(self.stack, Service::Livekit)?;
                devstack::restart_service(self.stack, Service::Livekit).await?;
                observe(down, media, gaps, watcher, Some(membership), &mut row.left_during).await;
                devstack::restart_service(self.stack, Service::Auth).await?;
            }
            Fault::Lossy { loss, delay, lasting } => {
                self.relay.set_loss(loss);
                self.relay.set_delay(delay);
                let before = self.relay.stats();
                observe(lasting, media, gaps, watcher, Some(membership), &mut row.left_during)
                    .await;
                let seen = self.relay.stats().since(&before);
                self.relay.set_loss(0.0);
                self.relay.set_delay(Duration::ZERO);
                eprintln!(
                    "chaos: observed loss {:.1} % toward LiveKit, {:.1} % toward the program",
                    seen.udp_to_service.loss() * 100.0,
                    seen.udp_to_bot.loss() * 100.0
                );
            }
            Fault::Cut(down) => {
                self.relay.cut();
                observe(down, media, gaps, watcher, Some(membership), &mut row.left_during).await;
                self.relay.restore();
                if row.left_during != Some(true) {
                    row.problems.push("the delayed leave did not fire during the cut".into());
                }
            }
            Fault::Stop(down) => {
                let pid = Pid::from_raw(bot.id() as i32);
                kill(pid, Signal::SIGSTOP)?;
                observe(down, media, gaps, watcher, Some(membership), &mut row.left_during).await;
                kill(pid, Signal::SIGCONT)?;
                if row.left_during != Some(true) {
                    row.problems.push(
                        "the delayed leave did not fire while the program was stopped".into(),
                    );
                }
            }
        }
        Ok(Instant::now())
    }

    /// Brings back a service a failed scenario left down.
    async fn heal(&mut self) -> anyhow::Result<()> {
        self.relay.restore();
        self.relay.set_loss(0.0);
        self.relay.set_delay(Duration::ZERO);
        for service in [Service::Synapse, Service::Livekit, Service::Auth] {
            if !self.stack.pids.contains_key(service.name()) {
                eprintln!("chaos: starting {} again", service.name());
                devstack::restart_service(self.stack, service).await?;
            }
        }
        Ok(())
    }

    fn element_call(&self, peer: &User, room_id: &str) -> anyhow::Result<ElementCall> {
        let settings = [
            ("EXPECT_VIDEO", "moving".to_owned()),
            ("WATCH_CHANGES", "1".to_owned()),
            ("STAY_SECONDS", "900".to_owned()),
        ];
        Ok(ElementCall::start(self.stack, Login::Session(peer), room_id, &settings)?)
    }

    fn start_program(
        &self,
        name: &str,
        user: &User,
        room_id: &str,
    ) -> anyhow::Result<(Child, Arc<Mutex<Vec<String>>>)> {
        let localpart = user.user_id.trim_start_matches('@').split(':').next().unwrap_or_default();
        let mut command = self.namespace.command(self.program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOMESERVER_URL", &self.stack.homeserver_url)
            .env("MATRIX_USERNAME", localpart)
            .env("MATRIX_PASSWORD", localpart)
            .env("ROOM_ID", room_id)
            .env("V4L2_VIDEO_SOURCE", "pattern")
            .env("VIDEO_FPS", "15")
            .env("AUDIO_SOURCE", "tone")
            .env("CALL_PRESENCE", "always")
            .env("STATUS_INTERVAL_SECS", "5")
            .env("MATRIX_STORE_DIR", self.dir.join(name).join("store"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child =
            command.spawn().with_context(|| format!("starting {}", self.program.display()))?;
        let log = forward_log(&mut child, &self.dir.join(format!("{name}.log")), false)?;
        Ok((child, log))
    }

    /// How long after `since` the SFU lists `identity` with a published track (polling until
    /// it does, or for [`RECOVER_WITHIN`]).
    async fn tracks_back(&self, room_id: &str, identity: &str, since: Instant) -> Option<Duration> {
        let client = self.room_service()?;
        let name = matrixrtc_auth::identity::livekit_room_alias(room_id, "m.call#ROOM");
        while since.elapsed() < RECOVER_WITHIN {
            let published = client.list_participants(&name).await.is_ok_and(|participants| {
                participants.iter().any(|p| p.identity == identity && !p.tracks.is_empty())
            });
            if published {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    fn room_service(&self) -> Option<RoomServiceClient> {
        RoomServiceClient::new(
            &self.stack.livekit_url.parse().ok()?,
            self.stack.livekit_api_key.clone(),
            Secret::new(self.stack.livekit_api_secret.clone()),
            Duration::from_secs(5),
        )
        .ok()
    }

    /// The program's LiveKit participants, once `check` holds for their count or `within` has
    /// passed.
    async fn participants_within(
        &self,
        room_id: &str,
        identity: &str,
        within: Duration,
        check: impl Fn(usize) -> bool,
    ) -> usize {
        let Some(client) = self.room_service() else { return usize::MAX };
        let name = matrixrtc_auth::identity::livekit_room_alias(room_id, "m.call#ROOM");
        let until = Instant::now() + within;
        loop {
            let count = client
                .list_participants(&name)
                .await
                .map(|p| p.iter().filter(|p| p.identity == identity).count())
                .unwrap_or(0);
            if check(count) || Instant::now() >= until {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// While a fault lasts: samples the media, follows Element Call, and notes whether the
/// program's membership went away (when the homeserver can be asked).
async fn observe(
    lasting: Duration,
    media: &mut Media,
    gaps: &mut Gaps,
    watcher: &mut ElementCall,
    membership: Option<&Membership<'_>>,
    left: &mut Option<bool>,
) {
    if membership.is_some() {
        *left = Some(false);
    }
    let until = Instant::now() + lasting;
    while Instant::now() < until {
        media.sample_for(SAMPLE_EVERY).await;
        gaps.take(watcher);
        if let Some(membership) = membership
            && *left == Some(false)
            && membership.count().await.is_ok_and(|n| n == 0)
        {
            *left = Some(true);
        }
    }
}

/// The program's membership in the room, as the homeserver has it.
struct Membership<'a> {
    hs: &'a Homeserver,
    room_id: &'a str,
    user: &'a User,
    device: &'a str,
}

impl Membership<'_> {
    /// How many call memberships the program's user has (any device, non-empty content).
    async fn count(&self) -> anyhow::Result<usize> {
        let path = format!("/_matrix/client/v3/rooms/{}/state", encode_path_segment(self.room_id));
        let state = self.hs.get(self.user, &path).await?;
        let events = state.as_array().context("room state is a list")?;
        Ok(events
            .iter()
            .filter(|e| {
                e["type"] == "org.matrix.msc3401.call.member"
                    && e["sender"] == self.user.user_id.as_str()
                    && e["content"].as_object().is_some_and(|c| !c.is_empty())
            })
            .count())
    }

    /// The count once `check` holds or `within` has passed.
    async fn count_within(
        &self,
        within: Duration,
        check: impl Fn(usize) -> bool,
    ) -> anyhow::Result<usize> {
        let until = Instant::now() + within;
        loop {
            let count = self.count().await?;
            if check(count) || Instant::now() >= until {
                if !check(count) {
                    eprintln!(
                        "chaos: {count} memberships of {} ({})",
                        self.user.user_id, self.device
                    );
                }
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The program's delayed call-membership events on the homeserver.
async fn delayed_events(hs: &Homeserver, user: &User) -> anyhow::Result<usize> {
    let list = hs.get(user, "/_matrix/client/unstable/org.matrix.msc4140/delayed_events").await?;
    Ok(list["delayed_events"].as_array().map_or(0, |events| {
        events.iter().filter(|e| e["type"] == "org.matrix.msc3401.call.member").count()
    }))
}

/// The program's upstream media through the relay: datagrams per second over time.
struct Media {
    relay: RelayHandle,
    /// `(when, datagrams forwarded toward the stack so far)`.
    samples: Vec<(Instant, u64)>,
}

impl Media {
    fn new(relay: RelayHandle) -> Self {
        let first = (Instant::now(), relay.stats().udp_to_service.forwarded);
        Self { relay, samples: vec![first] }
    }

    async fn sample_for(&mut self, lasting: Duration) {
        let until = Instant::now() + lasting;
        while Instant::now() < until {
            tokio::time::sleep(SAMPLE_EVERY.min(until.saturating_duration_since(Instant::now())))
                .await;
            self.samples.push((Instant::now(), self.relay.stats().udp_to_service.forwarded));
        }
    }

    /// Datagrams per second over the last [`RATE_WINDOW`].
    fn rate(&self) -> f64 {
        let Some(&(now, count)) = self.samples.last() else { return 0.0 };
        let start = self.samples.iter().rev().find(|(t, _)| now.duration_since(*t) >= RATE_WINDOW);
        match start {
            Some(&(then, before)) => {
                (count - before) as f64 / now.duration_since(then).as_secs_f64()
            }
            None => 0.0,
        }
    }

    /// The lowest rate over any [`RATE_WINDOW`] ending at a sample from `from` on.
    fn lowest_rate_since(&self, from: usize) -> f64 {
        (from.max(1)..self.samples.len())
            .filter_map(|end| {
                let (now, count) = self.samples[end];
                let start = self.samples[..end]
                    .iter()
                    .rev()
                    .find(|(t, _)| now.duration_since(*t) >= RATE_WINDOW)?;
                Some((count - start.1) as f64 / now.duration_since(start.0).as_secs_f64())
            })
            .fold(f64::INFINITY, f64::min)
            .min(self.rate())
    }
}

/// When Element Call did not show the program's video.
#[derive(Debug, Default)]
struct Gaps {
    on: bool,
    off_since: Option<Instant>,
    back_at: Option<Instant>,
    went_off_at: Option<Instant>,
    longest: Duration,
}

impl Gaps {
    /// Takes Element Call's `video-on` / `video-off` events that came in.
    fn take(&mut self, watcher: &mut ElementCall) {
        for event in watcher.drain() {
            self.apply(&event);
        }
    }

    /// Takes one event of Element Call's.
    fn apply(&mut self, event: &Value) {
        {
            match event["event"].as_str() {
                Some("video-on") => {
                    if let Some(since) = self.off_since.take() {
                        self.longest = self.longest.max(since.elapsed());
                        self.back_at = Some(Instant::now());
                    }
                    self.on = true;
                }
                Some("video-off") => {
                    // `since` is when the first of the two failed looks began (Unix ms).
                    let ago = unix_ms().saturating_sub(event["since"].as_u64().unwrap_or(0));
                    let since = Instant::now() - Duration::from_millis(ago.min(10_000));
                    self.off_since = Some(since);
                    self.went_off_at = Some(since);
                    self.on = false;
                }
                _ => {}
            }
        }
    }

    fn went_off_since(&self, at: Instant) -> bool {
        self.went_off_at.is_some_and(|off| off >= at)
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Waits for Element Call's next event `name`.
async fn wait_event(
    watcher: &mut ElementCall,
    name: &str,
    within: Duration,
) -> anyhow::Result<Value> {
    watcher.wait(name, None, within).await.map_err(|error| anyhow::anyhow!(error))
}

/// The program's device, from its `logged in` line.
async fn wait_device(log: &Mutex<Vec<String>>) -> anyhow::Result<String> {
    let until = Instant::now() + JOIN_WITHIN;
    loop {
        let device = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|l| l.contains("logged in"))
            .and_then(|l| l.split("device=").nth(1))
            .map(|rest| {
                rest.split_whitespace().next().unwrap_or_default().trim_matches('"').to_owned()
            });
        if let Some(device) = device.filter(|d| !d.is_empty()) {
            return Ok(device);
        }
        if Instant::now() >= until {
            bail!("the program did not log in within {JOIN_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "–".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
}

/// The results as a Markdown table.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | fault | lowest upstream during the fault | media back on the SFU | Element Call shows it again | longest gap in Element Call | membership gone during the fault | fds before → after | left behind / problems |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} s | {} | {} → {} | {} |\n",
            row.name,
            row.fault,
            row.lowest_upstream.map_or_else(|| "–".to_owned(), |l| format!("{:.0} %", l * 100.0)),
            seconds(row.media_back),
            seconds(row.shown_again),
            row.longest_gap.as_secs_f64(),
            match row.left_during {
                Some(true) => "yes",
                Some(false) => "no",
                None => "–",
            },
            row.fds.0,
            row.fds.1,
            if row.problems.is_empty() { "nothing".to_owned() } else { row.problems.join("; ") },
        ));
    }
    out
}
