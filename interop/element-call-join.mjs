// Joins a MatrixRTC call with Element Call (standalone, served on 127.0.0.1) in headless Chromium.
//
// Input (environment):
//   EC_URL, ROOM_ID, and either USER_ID, DEVICE_ID, ACCESS_TOKEN (injected into Element Call's
//     storage) or PAGE_URL (a page that logs Element Call in itself, as `cargo xtask demo` prints);
//   HOST_PAGE_URL: instead, a widget host's page (`http://127.0.0.1:<port>/?secret=<token>`, as
//     `example-rtc-livekit-join` prints with ELEMENT_CALL_URL) that embeds Element Call as a
//     widget in its iframe named `ec` (EC_URL, ROOM_ID and the session variables are then not
//     needed). Element Call joins by itself there: the script waits (60 s) for that frame's call
//     view (its leave button) and then looks for everything below in that frame; only the
//     screenshot is of the whole page. The page's `document.body.dataset` says `state`
//     (`connecting`, `in-call`, `ended`), `widgetId` and `rejected` (the count of messages it
//     refused to relay). The URL's query (the secret) is never printed;
//   STAY_SECONDS (default 20), SCREENSHOT (a PNG path), CHROMIUM (default /usr/bin/chromium);
//   EXPECT_PARTICIPANT: a display name or user id that must show up in the call view;
//   EXPECT_VIDEO: what a remote video must show: a colour (`red`, `green`, `blue` or `R,G,B`,
//     the picture's mean within 60 per channel), `bars` (the test pattern's colour bars),
//     `halves:R,G,B|R,G,B` (the left half's mean one colour, the right half's the other) or
//     `moving` (a picture that changes: two samples 300 ms apart differ by more than 2 on average
//     per pixel and channel, and the decoded-frame count grew; reported with `motion`, that
//     difference; Chromium's fake camera qualifies, a frozen or black picture does not);
//     reported as `video-seen` with the wall-clock time, and the screenshot is taken then;
//     mirrored videos (Element Call's own preview) are not looked at;
//   WATCH_RUNS: with EXPECT_VIDEO, wait for the video to come and go this many times
//     (`video-seen` and `video-gone` with `run`), for `cargo xtask bench join`;
//   WATCH_CHANGES: with EXPECT_VIDEO, `1` to keep looking (about every 100 ms, each look taking
//     300 ms with `moving`) until STAY_SECONDS are over and report every change as it happens:
//     `video-on` when a remote video shows the target, `video-off` {since} once two looks in a
//     row find none (`since`: the time of the first of them); no error when it never shows;
//   WATCH_FRAMES: with EXPECT_VIDEO, `1` to keep watching that video until STAY_SECONDS are
//     over and report the longest time its decoded-frame count stood still (`frame-gaps`);
//     a frozen picture still shows its colour, so this is how a decryption gap shows;
//   EXPECT_TONE: a frequency in Hz (e.g. 400) that the remote audio must carry. An init script
//     records every remote audio track the page receives (a listener on the `track` events of
//     each RTCPeerConnection; Element Call's own handling is untouched) and analyses it with Web
//     Audio (AnalyserNode, fftSize 8192, no smoothing, a spectrum every 40 ms; the track also
//     plays in a muted `Audio` element, without which Chromium gives Web Audio only silence
//     from a remote WebRTC track). A spectrum carries the tone when the tone's level (its
//     strongest bin within 10 Hz, or 1.5 bin widths if more, of the frequency) is at least
//     TONE_MARGIN_DB (default 20) dB above the noise floor (the median bin from 100 to 4000 Hz,
//     leaving out ±50 Hz around the tone; bins at -Infinity count as -200 dB) and that bin is
//     also the strongest of the band. Reported as `tone-heard` {frequency_hz, peak_hz,
//     margin_db, track_index, tracks} with the best such spectrum of the first second; none
//     within STAY_SECONDS throws with the best margin seen and where that spectrum peaked.
//     Spectra are taken all the time, so a short beep is caught: Chromium's fake microphone
//     sends a 400 Hz square wave (0/1, 110 samples a period at 44.1 kHz) for 20 ms every 500 ms
//     (about 55 ms above -35 dBFS after WebRTC's audio processing and Opus);
//   WATCH_AUDIO: with EXPECT_TONE, `1` to keep analysing the track that carried the tone until
//     STAY_SECONDS are over and report `audio-stats` {track_index, seconds_observed,
//     seconds_with_tone, min_margin_db, track_switches}: the whole seconds since `tone-heard`,
//     those with at least one spectrum carrying the tone, and the smallest per-second best
//     margin; when that track ends (Element Call subscribed again after a reconnect), the watch
//     moves to the next track that carries the tone and counts from there (`track_switches`);
//   EXPECT_SPEAKER: a display name (or user id: its local part, Synapse's default display name,
//     is tried as well) whose tile Element Call must mark as speaking: a grid tile with
//     GridTile.module.css's `speaking` class (hashed: `_speaking_…`), or a spotlight tile whose
//     sound waves show (`[class*="_waves_"][data-visible="true"]`); reported as `speaker-seen`
//     {name, label}; not within STAY_SECONDS throws, listing the tiles. Element Call shows no
//     speaking indicator in its one-on-one layout (two members): the call needs a third member.
//     LiveKit decides who speaks (at least 40% of each 400 ms above -35 dBov, by default): the
//     fake microphone's beep never qualifies, a FAKE_AUDIO_FILE tone does;
//   FAKE_AUDIO_FILE: a WAV file that Chromium's fake microphone plays (looped) instead of its
//     beep (`--use-file-for-fake-audio-capture`);
//   FAKE_VIDEO_FILE: a Y4M file that Chromium's fake camera shows (looped) instead of its own
//     picture (`--use-file-for-fake-video-capture`);
//   FORGE_BODY (with HOST_PAGE_URL): after the participant and video checks, messages that the
//     host page must refuse to relay are posted to it: a widget API `send_event` request
//     (an `m.room.message` with this body, the page's widget id) first from a hidden iframe of
//     FORGE_FROM_URL (required then; a URL of another origin, e.g. the homeserver's
//     `/_matrix/client/versions`) put inside Element Call's frame (right window chain, wrong
//     origin and source), then from the host page's own window (its origin, wrong source).
//     The page's `rejected` count must grow by 2 within 5 s: `forged-rejected` {rejected,
//     before}, else an error;
//   WAIT_ENDED_SECONDS (with HOST_PAGE_URL): instead of waiting out the rest of STAY_SECONDS,
//     say `waiting-ended` and wait up to this many seconds for the host page to end the session
//     (its `state` `ended`, e.g. after the host got SIGTERM): `host-ended` {status} with the
//     page's `#status` text, else an error; not with HANGUP;
//   HANGUP: `1` to leave with Element Call's own button at the end (with HOST_PAGE_URL, the host
//     page must then say `ended` within 30 s);
//   EC_CONFIG: a JSON object laid over Element Call's config.json as the page loads it (each
//     top-level key replaced, objects merged one level deep), e.g.
//     `{"matrix_rtc_session":{"delegated_delayed_leave":{"delay_ms":10000,"restart_ms":3600000}}}`;
//   BLOCK_DELAYED_RESTARTS: `1` to answer Element Call's own restarts of its delayed events
//     (MSC4140 `…/delayed_events/{id}/restart`, and the older `…/delayed_events/{id}` with
//     `{"action":"restart"}`) with 200 `{}` without passing them on: only someone else (the
//     authorization service it delegated to) then keeps its delayed leave alive. Each is
//     reported as `restart-blocked` {count};
//   CRASH: `1` to end with SIGKILL to the browser and all its processes instead of closing it
//     (nothing runs in the page after that: no hang-up, no leave), reported as `crashed`
//     {processes} just before the script exits.
// Output: one JSON object per line on stdout: {"event": "...", ...}; `t` fields are Unix ms.
// With HOST_PAGE_URL, an `error` also says the host page's `host_state` and `host_status`.
// Exit code 0 when joined (and the expected participant, video, tone and speaker appeared, the
// forged messages were refused, the host page ended and the hang-up worked, as asked), 1
// otherwise. The access token and the host page's secret are never printed.
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const say = (event, data = {}) => console.log(JSON.stringify({ event, t: Date.now(), ...data }));

const hostPageUrl = env("HOST_PAGE_URL", "");
const ecUrl = env("EC_URL", hostPageUrl ? "" : undefined);
const pageUrl = hostPageUrl ? "" : env("PAGE_URL", "");
const noSession = Boolean(pageUrl || hostPageUrl);
const userId = noSession ? "" : env("USER_ID");
const deviceId = noSession ? "" : env("DEVICE_ID");
const accessToken = noSession ? "" : env("ACCESS_TOKEN");
const roomId = env("ROOM_ID", hostPageUrl ? "" : undefined);
const watchRuns = Number(env("WATCH_RUNS", "0"));
const staySeconds = Number(env("STAY_SECONDS", "20"));
const screenshot = env("SCREENSHOT", "");
const expectParticipant = env("EXPECT_PARTICIPANT", "");
const expectVideo = env("EXPECT_VIDEO", "");
const hangup = env("HANGUP", "") === "1";
const watchFrames = env("WATCH_FRAMES", "") === "1";
const watchChanges = env("WATCH_CHANGES", "") === "1";
if (watchChanges && (!expectVideo || watchRuns > 0 || watchFrames)) throw new Error("WATCH_CHANGES needs EXPECT_VIDEO, without WATCH_RUNS and WATCH_FRAMES");
const expectTone = Number(env("EXPECT_TONE", "0"));
const toneMarginDb = Number(env("TONE_MARGIN_DB", "20"));
const watchAudio = env("WATCH_AUDIO", "") === "1";
const expectSpeaker = env("EXPECT_SPEAKER", "");
const fakeAudioFile = env("FAKE_AUDIO_FILE", "");
const fakeVideoFile = env("FAKE_VIDEO_FILE", "");
const forgeBody = env("FORGE_BODY", "");
const forgeFromUrl = forgeBody ? env("FORGE_FROM_URL") : "";
const waitEndedSeconds = Number(env("WAIT_ENDED_SECONDS", "0"));
const ecConfig = JSON.parse(env("EC_CONFIG", "{}"));
const blockDelayedRestarts = env("BLOCK_DELAYED_RESTARTS", "") === "1";
const crash = env("CRASH", "") === "1";
if (typeof ecConfig !== "object" || ecConfig === null || Array.isArray(ecConfig)) throw new Error("EC_CONFIG must be a JSON object");
if (crash && hangup) throw new Error("CRASH and HANGUP exclude each other");
if (!(expectTone >= 0) || !(toneMarginDb > 0)) throw new Error("EXPECT_TONE and TONE_MARGIN_DB must be numbers");
if (!(waitEndedSeconds >= 0)) throw new Error("WAIT_ENDED_SECONDS must be a number");
if ((forgeBody || waitEndedSeconds > 0) && !hostPageUrl) throw new Error("FORGE_BODY and WAIT_ENDED_SECONDS need HOST_PAGE_URL");
if (waitEndedSeconds > 0 && hangup) throw new Error("WAIT_ENDED_SECONDS and HANGUP exclude each other");
if (forgeBody && new URL(forgeFromUrl).origin === new URL(hostPageUrl).origin) {
  throw new Error("FORGE_FROM_URL must be of another origin than HOST_PAGE_URL");
}
// What is never printed: the access token, the host page's secret (as is and URL-encoded), and
// any JWT (Element Call logs its LiveKit tokens).
const hostSecret = hostPageUrl ? new URL(hostPageUrl).searchParams.get("secret") ?? "" : "";
const secrets = [...new Set([accessToken, hostSecret, encodeURIComponent(hostSecret)])].filter((s) => s.length > 0);
const redact = (text) => secrets
  .reduce((t, s) => t.replaceAll(s, "[redacted]"), String(text))
  .replace(/eyJ[\w-]+\.[\w-]+\.?[\w-]*/g, "[jwt]");
// A URL without its query and fragment.
const bareUrl = (url) => redact(String(url).split(/[?#]/)[0]);
const named = { red: [255, 0, 0], green: [0, 255, 0], blue: [0, 0, 255] };
const colour = (text) => named[text] ?? text.split(",").map(Number);
const target = !expectVideo ? null
  : expectVideo === "bars" || expectVideo === "moving" ? expectVideo
  : expectVideo.startsWith("halves:") ? { halves: expectVideo.slice("halves:".length).split("|").map(colour) }
  : colour(expectVideo);
// rtc-media's TestPattern::Moving, left to right.
const bars = [[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0], [0, 0, 255], [0, 0, 0]];

// The first remote video that shows `target`, or null. `view` is the page or Element Call's frame.
async function findVideo(view) {
  return view.evaluate(async ({ target, bars }) => {
    const close = (a, b, tolerance) => a.every((c, i) => Math.abs(c - b[i]) <= tolerance);
    const sample = (video) => {
      const canvas = document.createElement("canvas");
      canvas.width = 64; canvas.height = 48;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(video, 0, 0, 64, 48);
      return ctx.getImageData(0, 0, 64, 48).data;
    };
    const mean = (data) => {
      const sum = [0, 0, 0];
      for (let i = 0; i < data.length; i += 4) { sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; }
      return sum.map((c) => Math.round(c / (data.length / 4)));
    };
    const frameCount = (video) => video.getVideoPlaybackQuality?.().totalVideoFrames ?? null;
    for (const video of document.querySelectorAll("video")) {
      if (!video.videoWidth || getComputedStyle(video).transform.startsWith("matrix(-1")) continue;
      if (target === "moving") {
        // Two samples 300 ms apart: the mean absolute difference per pixel and channel.
        const [before, framesBefore] = [sample(video), frameCount(video)];
        await new Promise((resolve) => setTimeout(resolve, 300));
        if (!video.isConnected || !video.videoWidth) continue;
        const [data, frames] = [sample(video), frameCount(video)];
        let diff = 0;
        for (let i = 0; i < data.length; i += 4) {
          diff += Math.abs(data[i] - before[i]) + Math.abs(data[i + 1] - before[i + 1]) + Math.abs(data[i + 2] - before[i + 2]);
        }
        const motion = Math.round((diff / (data.length / 4 * 3)) * 100) / 100;
        if (!(motion > 2) || framesBefore === null || !(frames > framesBefore)) continue;
        return { rgb: mean(data), width: video.videoWidth, height: video.videoHeight, frames, motion };
      }
      const data = sample(video);
      const at = (x, y) => { const i = (y * 64 + x) * 4; return [data[i], data[i + 1], data[i + 2]]; };
      let rgb;
      if (target === "bars") {
        // The bars fill the top two thirds; the moving box may hide one of them.
        const matching = bars.filter((bar, i) => close(at(i * 8 + 4, 12), bar, 70)).length;
        if (matching < 7) continue;
        rgb = at(36, 12);
      } else if (target.halves) {
        // The mean of each half, leaving out a band in the middle.
        const half = (x0, x1) => {
          const sum = [0, 0, 0];
          let n = 0;
          for (let y = 0; y < 48; y++) for (let x = x0; x < x1; x++) { at(x, y).forEach((c, i) => { sum[i] += c; }); n++; }
          return sum.map((c) => Math.round(c / n));
        };
        const [left, right] = [half(0, 28), half(36, 64)];
        if (!close(left, target.halves[0], 60) || !close(right, target.halves[1], 60)) continue;
        rgb = [...left, ...right];
      } else {
        rgb = mean(data);
        if (!close(rgb, target, 60)) continue;
      }
      return { rgb, width: video.videoWidth, height: video.videoHeight, frames: frameCount(video) };
    }
    return null;
  }, { target, bars });
}

// In the page, before Element Call runs (EXPECT_TONE): records each remote audio track that a
// peer connection receives and analyses it; `window.__ecTone` holds the results. Element Call's
// own handling of the tracks is untouched (a listener is added, nothing is replaced).
function toneInitScript({ frequency, marginDb }) {
  const Original = window.RTCPeerConnection;
  if (!Original) return;
  const state = { tracks: [], heard: null, best: null, context: null };
  window.__ecTone = state;
  const fftSize = 8192;
  const floor = -200; // -Infinity (digital silence) and below count as -200 dB
  function spectrum(entry) {
    const { analyser, bins } = entry;
    analyser.getFloatFrequencyData(bins);
    const binHz = state.context.sampleRate / fftSize;
    const toneWidth = Math.max(1.5 * binHz, 10);
    let tone = floor, toneBin = -1, peak = floor, peakBin = -1;
    const band = [];
    for (let k = Math.ceil(100 / binHz); k <= Math.floor(4000 / binHz) && k < bins.length; k++) {
      const db = Math.max(bins[k], floor);
      const hz = k * binHz;
      if (db > peak) { peak = db; peakBin = k; }
      if (Math.abs(hz - frequency) <= toneWidth && db > tone) { tone = db; toneBin = k; }
      if (Math.abs(hz - frequency) > 50) band.push(db);
    }
    band.sort((a, b) => a - b);
    const median = band.length ? band[Math.floor(band.length / 2)] : floor;
    const margin = tone - median;
    return { margin, carries: margin >= marginDb && peakBin === toneBin, peakHz: peakBin * binHz, peakDb: peak };
  }
  function tick() {
    if (state.context.state !== "running") state.context.resume().catch(() => {});
    const now = Date.now();
    for (const entry of state.tracks) {
      if (entry.track.readyState === "ended") {
        // Element Call subscribed again (a reconnect): the watch moves to the next track that
        // carries the tone, and its seconds count from there.
        if (state.heard?.track_index === entry.index && !state.heard.ended) {
          state.heard.ended = true;
          state.switches = (state.switches ?? 0) + 1;
        }
        continue;
      }
      const s = spectrum(entry);
      if (!state.best || s.margin > state.best.margin) state.best = { ...s, track_index: entry.index };
      if (state.heard?.ended && s.carries) {
        state.heard = { at: now, track_index: entry.index, ...s };
        state.seconds = [];
      }
      if (!state.heard && s.carries) state.heard = { at: now, track_index: entry.index, ...s };
      // What is reported: the best spectrum of the first second (a beep's first spectrum may
      // hold only its start).
      if (state.heard?.track_index === entry.index && now - state.heard.at < 1000 && s.carries &&
          s.margin > state.heard.margin) Object.assign(state.heard, s);
      if (state.heard && state.heard.track_index === entry.index) {
        const second = Math.floor((now - state.heard.at) / 1000);
        const sec = (state.seconds ??= []);
        const slot = (sec[second] ??= { best: floor, carries: false });
        slot.best = Math.max(slot.best, s.margin);
        slot.carries ||= s.carries;
      }
    }
  }
  function analyse(track) {
    if (state.tracks.some((entry) => entry.track === track)) return;
    if (!state.context) {
      state.context = new AudioContext();
      setInterval(tick, 40);
    }
    const context = state.context;
    context.resume().catch(() => {});
    const stream = new MediaStream([track]);
    // Chromium only lets a remote WebRTC track's audio into Web Audio while the track also
    // plays in a media element; a muted one is enough.
    const sink = new Audio();
    sink.muted = true;
    sink.srcObject = stream;
    sink.play().catch(() => {});
    const analyser = context.createAnalyser();
    analyser.fftSize = fftSize;
    analyser.smoothingTimeConstant = 0;
    context.createMediaStreamSource(stream).connect(analyser);
    const silent = context.createGain();
    silent.gain.value = 0;
    analyser.connect(silent).connect(context.destination);
    state.tracks.push({ index: state.tracks.length, track, sink, analyser, bins: new Float32Array(fftSize / 2) });
  }
  class RecordingPeerConnection extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("track", (event) => {
        if (event.track.kind === "audio") {
          try { analyse(event.track); } catch (error) { console.error("EXPECT_TONE analysis:", String(error)); }
        }
      });
    }
  }
  window.RTCPeerConnection = RecordingPeerConnection;
}

// What the page's tone analysis found so far (EXPECT_TONE).
async function toneState(page) {
  return page.evaluate(() => {
    const state = window.__ecTone;
    if (!state) return null;
    const round = (x) => (x === undefined || x === null ? null : Math.round(x * 10) / 10);
    const view = (s) => s && { track_index: s.track_index, margin_db: round(s.margin), peak_hz: round(s.peakHz) };
    return {
      tracks: state.tracks.length,
      context: state.context?.state ?? null,
      sample_rate: state.context?.sampleRate ?? null,
      heard: view(state.heard),
      switches: state.switches ?? 0,
      best: view(state.best),
      seconds: (state.seconds ?? []).map((s) => s && { best: round(s.best), carries: s.carries }),
    };
  });
}

// Waits for the tone (EXPECT_TONE), then with WATCH_AUDIO keeps watching until `deadline`.
async function watchTone(page, deadline) {
  let state = null;
  while (Date.now() < deadline) {
    state = await toneState(page);
    if (state?.heard) break;
    await page.waitForTimeout(100);
  }
  if (state?.heard) {
    await page.waitForTimeout(1100);
    state = await toneState(page);
  }
  if (!state?.heard) {
    const best = state?.best;
    throw new Error(`no ${expectTone} Hz tone heard within ${staySeconds} s on ${state?.tracks ?? 0} remote audio track(s) ` +
      `(audio context ${state?.context ?? "never made"}): best margin ${best ? `${best.margin_db} dB, that spectrum peaking at ${best.peak_hz} Hz` : "none (no spectrum)"}`);
  }
  say("tone-heard", { frequency_hz: expectTone, peak_hz: state.heard.peak_hz, margin_db: state.heard.margin_db, track_index: state.heard.track_index, tracks: state.tracks });
  if (!watchAudio) return;
  while (Date.now() < deadline) await page.waitForTimeout(250);
  state = await toneState(page);
  // Whole seconds only: the last one is cut short by the deadline.
  const seconds = state.seconds.slice(0, -1).map((s) => s ?? { best: -200, carries: false });
  say("audio-stats", {
    track_index: state.heard.track_index,
    seconds_observed: seconds.length,
    seconds_with_tone: seconds.filter((s) => s.carries).length,
    min_margin_db: seconds.length ? Math.min(...seconds.map((s) => s.best)) : null,
    track_switches: state.switches,
  });
}

// Waits until Element Call marks the tile of `name` as speaking (EXPECT_SPEAKER).
async function watchSpeaker(page, deadline) {
  const names = [expectSpeaker];
  if (expectSpeaker.startsWith("@")) names.push(expectSpeaker.slice(1).split(":")[0]);
  let tiles = [];
  while (Date.now() < deadline) {
    const found = await page.evaluate((names) => {
      const tiles = [];
      for (const tile of document.querySelectorAll('[data-testid="videoTile"]')) {
        const label = (tile.querySelector('[data-testid="name_tag"]') ?? tile).textContent ?? "";
        const speaking = [...tile.classList].some((c) => /^_speaking_/.test(c)) ||
          tile.querySelector('[class*="_waves_"][data-visible="true"]') !== null;
        tiles.push({ label: label.slice(0, 80), speaking });
      }
      const hit = tiles.find((t) => t.speaking && names.some((n) => t.label.includes(n)));
      return { hit: hit ?? null, tiles };
    }, names);
    tiles = found.tiles;
    if (found.hit) { say("speaker-seen", { name: expectSpeaker, label: found.hit.label }); return; }
    await page.waitForTimeout(100);
  }
  throw new Error(`Element Call did not mark ${expectSpeaker} as speaking within ${staySeconds} s; tiles: ${JSON.stringify(tiles)}`);
}

// The host page's `document.body.dataset` (HOST_PAGE_URL).
async function hostData(page) {
  return page.evaluate(() => ({ ...document.body.dataset }));
}

// Waits (up to `ms`) until the host page says `state` `ended` (HOST_PAGE_URL).
async function waitHostEnded(page, ms) {
  try {
    await page.waitForFunction(() => document.body.dataset.state === "ended", null, { timeout: ms, polling: 100 });
  } catch (error) {
    const state = await hostData(page).then((d) => d.state, (e) => `unknown (${String(e).slice(0, 200)})`);
    throw new Error(`the host page did not say ended within ${ms / 1000} s: its state is ${state}`);
  }
}

// Posts widget API requests that the host page must refuse to relay (FORGE_BODY): one from a
// hidden iframe of FORGE_FROM_URL inside Element Call's frame `view` (another origin, another
// window), one from the host page's own window; its `rejected` count must grow by 2.
async function forge(page, view) {
  const { widgetId, rejected } = await hostData(page);
  if (!widgetId) throw new Error("the host page has no data-widget-id");
  const before = Number(rejected ?? NaN);
  if (!Number.isInteger(before)) throw new Error(`the host page's data-rejected is ${JSON.stringify(rejected)}, not a count`);
  const forgeHref = new URL(forgeFromUrl).href;
  if (new URL(forgeHref).origin === new URL(view.url()).origin) {
    throw new Error("FORGE_FROM_URL must be of another origin than Element Call");
  }
  const request = (requestId) => ({
    api: "fromWidget", widgetId, requestId, action: "send_event",
    data: { type: "m.room.message", content: { msgtype: "m.text", body: forgeBody } },
  });
  const frameId = "forge-from-other-origin";
  await view.evaluate(({ frameId, src }) => {
    const frame = document.createElement("iframe");
    frame.id = frameId;
    frame.style.display = "none";
    frame.src = src;
    document.body.append(frame);
  }, { frameId, src: forgeHref });
  try {
    let nested = null;
    for (const until = Date.now() + 10000; !nested && Date.now() < until;) {
      nested = page.frames().find((f) => f.parentFrame() === view && f.url() === forgeHref) ?? null;
      if (!nested) await page.waitForTimeout(50);
    }
    if (!nested) {
      const urls = view.childFrames().map((f) => bareUrl(f.url()));
      throw new Error(`the iframe of ${bareUrl(forgeHref)} did not load within 10 s (Element Call's child frames: ${urls.join(", ") || "none"})`);
    }
    await nested.waitForLoadState("load", { timeout: 10000 });
    await nested.evaluate((message) => window.parent.parent.postMessage(message, "*"), request("forged-origin-1"));
    await page.evaluate((message) => window.postMessage(message, "*"), request("forged-source-1"));
    let seen = before;
    for (const until = Date.now() + 5000; ;) {
      seen = Number((await hostData(page)).rejected);
      if (seen >= before + 2 || Date.now() >= until) break;
      await page.waitForTimeout(50);
    }
    if (!(seen >= before + 2)) {
      throw new Error(`the host page's rejected count is ${seen} 5 s after 2 forged messages (it was ${before} before)`);
    }
    say("forged-rejected", { rejected: seen, before });
  } finally {
    await view.evaluate((frameId) => document.getElementById(frameId)?.remove(), frameId).catch(() => {});
  }
}

// The processes below this one (the browser and its helpers), from /proc.
async function descendants() {
  const { readdir, readFile } = await import("node:fs/promises");
  const parents = new Map();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => null);
    // The fields after the command (which may hold spaces) in parentheses: state, ppid, …
    const ppid = stat ? Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) : NaN;
    if (Number.isInteger(ppid)) parents.set(Number(entry), ppid);
  }
  const found = [];
  const walk = (pid) => { for (const [child, parent] of parents) if (parent === pid) { found.push(child); walk(child); } };
  walk(process.pid);
  return found;
}

// Lays EC_CONFIG over Element Call's config.json; answers Element Call's own delayed-event
// restarts itself (BLOCK_DELAYED_RESTARTS).
async function routeContext(context) {
  if (Object.keys(ecConfig).length > 0) {
    await context.route(/\/config\.json(\?.*)?$/, async (route) => {
      const response = await route.fetch();
      const config = await response.json();
      for (const [key, value] of Object.entries(ecConfig)) {
        const old = config[key];
        config[key] = value && typeof value === "object" && !Array.isArray(value) && old && typeof old === "object"
          ? { ...old, ...value } : value;
      }
      await route.fulfill({ response, json: config });
      say("config-patched", { keys: Object.keys(ecConfig) });
    });
  }
  if (blockDelayedRestarts) {
    let count = 0;
    await context.route(/\/delayed_events\/[^/?#]+(\/restart)?([?#].*)?$/, async (route) => {
      const request = route.request();
      const restart = request.method() === "POST" && (/\/restart([?#].*)?$/.test(request.url()) ||
        (() => { try { return JSON.parse(request.postData() ?? "{}").action === "restart"; } catch { return false; } })());
      if (!restart) return route.fallback();
      count += 1;
      say("restart-blocked", { count });
      await route.fulfill({ status: 200, contentType: "application/json", body: "{}", headers: { "access-control-allow-origin": "*" } });
    });
  }
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    ...(fakeAudioFile ? [`--use-file-for-fake-audio-capture=${fakeAudioFile}`] : []),
    ...(fakeVideoFile ? [`--use-file-for-fake-video-capture=${fakeVideoFile}`] : []),
    // The stack's LiveKit listens on 127.0.0.1 only (see livekit-client.mjs).
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
let ok = false;
let page = null;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await routeContext(context);
  if (!noSession) {
    await context.addInitScript((auth) => {
      localStorage.setItem("matrix-auth-store", JSON.stringify(auth));
    }, { user_id: userId, device_id: deviceId, access_token: accessToken, passwordlessUser: false });
  }
  if (expectTone > 0) await context.addInitScript(toneInitScript, { frequency: expectTone, marginDb: toneMarginDb });
  page = await context.newPage();
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "error" || /livekit|MatrixRTC|membership/i.test(text)) {
      const bare = redact(text).replace(/\?[^\s'"]*/g, "?…").replace(/(\b(?:https?|wss?):\/\/[^\s'"#]*)#[^\s'"]*/g, "$1#…");
      say("console", { type: msg.type(), text: bare.slice(0, 500) });
    }
  });
  page.on("pageerror", (error) => say("pageerror", { text: redact(error).slice(0, 500) }));
  page.on("websocket", (ws) => say("websocket", { url: bareUrl(ws.url()) }));

  await page.goto(hostPageUrl || pageUrl || `${ecUrl}/room#?roomId=${encodeURIComponent(roomId)}`);
  // Where Element Call runs: the page itself, or (HOST_PAGE_URL) the host page's frame `ec`.
  let view = page;
  const joinUntil = Date.now() + 60000;
  if (hostPageUrl) {
    // Element Call joins by itself there (the host's URL parameters skip the lobby).
    let frame = null;
    while (!(frame = page.frame({ name: "ec" })) && Date.now() < joinUntil) await page.waitForTimeout(100);
    if (!frame) {
      const { state } = await hostData(page).catch(() => ({}));
      throw new Error(`the host page has no frame named ec within 60 s (its state: ${state ?? "unknown"})`);
    }
    view = frame;
  } else {
    const join = page.getByRole("button", { name: /join call/i }).first();
    await join.waitFor({ timeout: 60000 });
    say("lobby");
    await join.click();
    say("clicked-join");
  }
  // In the call view the lobby's join button is gone and a leave/hang-up button exists.
  const leave = view.getByRole("button", { name: /leave|end call|hang up/i }).first();
  await leave.waitFor({ timeout: hostPageUrl ? Math.max(joinUntil - Date.now(), 1) : 60000 });
  say("in-call");
  const deadline = Date.now() + staySeconds * 1000;
  // The audio and speaker checks run beside the video checks below; awaited before the end.
  const listening = Promise.allSettled([
    expectTone > 0 ? watchTone(view, deadline) : null,
    expectSpeaker ? watchSpeaker(view, deadline) : null,
  ]).then((results) => {
    const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason?.message ?? String(r.reason));
    if (failed.length) throw new Error(failed.join("; "));
  });
  listening.catch(() => {});
  if (expectParticipant) {
    await view.getByText(expectParticipant, { exact: false }).first().waitFor({ timeout: staySeconds * 1000 });
    say("participant-visible", { participant: expectParticipant });
  }
  if (target && watchChanges) {
    let on = false;
    let missSince = null;
    while (Date.now() < deadline) {
      const looked = Date.now();
      const seen = await findVideo(view);
      if (seen) {
        missSince = null;
        if (!on) { on = true; say("video-on", seen); }
      } else if (on) {
        if (missSince === null) missSince = looked;
        else { on = false; say("video-off", { since: missSince }); missSince = null; }
      }
      await page.waitForTimeout(100);
    }
  } else if (target && watchRuns > 0) {
    for (let run = 1; run <= watchRuns; run++) {
      let seen = null;
      while (!seen) { seen = await findVideo(view); if (!seen) await page.waitForTimeout(10); }
      say("video-seen", { run, ...seen });
      while (await findVideo(view)) await page.waitForTimeout(50);
      say("video-gone", { run });
    }
  } else if (target) {
    let seen = null;
    while (!seen && Date.now() < deadline) {
      seen = await findVideo(view);
      if (!seen) await page.waitForTimeout(50);
    }
    if (!seen) throw new Error(`no remote video showed ${expectVideo} within ${staySeconds} s`);
    say("video-seen", seen);
    if (screenshot) {
      await page.waitForTimeout(500);
      await page.screenshot({ path: screenshot });
      say("screenshot", { path: screenshot });
    }
    if (watchFrames) {
      let frames = seen.frames ?? 0;
      let progressAt = Date.now();
      let longest = 0;
      let longestEndedAt = null;
      while (Date.now() < deadline) {
        await page.waitForTimeout(100);
        const now = await findVideo(view);
        if (now && now.frames > frames) {
          const gap = Date.now() - progressAt;
          if (gap > longest) { longest = gap; longestEndedAt = Date.now(); }
          frames = now.frames;
          progressAt = Date.now();
        }
      }
      const open = Date.now() - progressAt;
      if (open > longest) { longest = open; longestEndedAt = Date.now(); }
      say("frame-gaps", { longest_ms: longest, longest_ended_at: longestEndedAt, frames });
    }
  }
  if (forgeBody) await forge(page, view);
  await listening;
  if (!waitEndedSeconds) while (Date.now() < deadline) await page.waitForTimeout(250);
  if (screenshot && (!target || watchRuns > 0)) {
    await page.screenshot({ path: screenshot });
    say("screenshot", { path: screenshot });
  }
  if (waitEndedSeconds) {
    say("waiting-ended", { seconds: waitEndedSeconds });
    await waitHostEnded(page, waitEndedSeconds * 1000);
    const status = await page.evaluate(() => document.getElementById("status")?.textContent ?? null);
    say("host-ended", { status: status === null ? null : redact(status).trim() });
  }
  if (hangup) {
    await leave.click();
    say("clicked-leave");
    if (hostPageUrl) {
      // Element Call tells the host it hung up; the host ends the session and removes the frame.
      await waitHostEnded(page, 30000);
    } else {
      // Element Call sends its leave, then shows its "call ended" or lobby view.
      await leave.waitFor({ state: "detached", timeout: 30000 });
      await page.waitForTimeout(1000);
    }
    say("hung-up");
  }
  ok = true;
  if (crash) {
    const processes = await descendants();
    for (const pid of processes) { try { process.kill(pid, "SIGKILL"); } catch { /* gone already */ } }
    say("crashed", { processes: processes.length });
    process.exit(0);
  }
} catch (error) {
  // With HOST_PAGE_URL, what the host page said then (e.g. that it ended the session).
  const host = hostPageUrl && page
    ? await page.evaluate(() => ({ host_state: document.body?.dataset.state ?? null, host_status: document.getElementById("status")?.textContent?.trim() ?? null }))
      .catch(() => ({}))
    : {};
  if (host.host_status) host.host_status = redact(host.host_status).slice(0, 500);
  say("error", { text: redact(error).slice(0, 1000), ...host });
} finally {
  await browser.close();
}
say(ok ? "done" : "failed");
process.exit(ok ? 0 : 1);
