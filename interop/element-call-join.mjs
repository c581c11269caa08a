// Joins a MatrixRTC call with Element Call (standalone, served on 127.0.0.1) in headless Chromium.
//
// Input (environment):
//   EC_URL, ROOM_ID, and either USER_ID, DEVICE_ID, ACCESS_TOKEN (injected into Element Call's
//     storage) or PAGE_URL (a page that logs Element Call in itself, as `cargo xtask demo` prints);
//   STAY_SECONDS (default 20), SCREENSHOT (a PNG path), CHROMIUM (default /usr/bin/chromium);
//   EXPECT_PARTICIPANT: a display name or user id that must show up in the call view;
//   EXPECT_VIDEO: what a remote video must show: a colour (`red`, `green`, `blue` or `R,G,B`,
//     the picture's mean within 60 per channel) or `bars` (the test pattern's colour bars);
//     reported as `video-seen` with the wall-clock time, and the screenshot is taken then;
//     mirrored videos (Element Call's own preview) are not looked at;
//   WATCH_RUNS: with EXPECT_VIDEO, wait for the video to come and go this many times
//     (`video-seen` and `video-gone` with `run`), for `cargo xtask bench join`;
//   WATCH_FRAMES: with EXPECT_VIDEO, `1` to keep watching that video until STAY_SECONDS are
//     over and report the longest time its decoded-frame count stood still (`frame-gaps`);
//     a frozen picture still shows its colour, so this is how a decryption gap shows;
//   HANGUP: `1` to leave with Element Call's own button at the end.
// Output: one JSON object per line on stdout: {"event": "...", ...}; `t` fields are Unix ms.
// Exit code 0 when joined (and the expected participant and video appeared, and the hang-up
// worked), 1 otherwise. The access token is never printed.
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const say = (event, data = {}) => console.log(JSON.stringify({ event, t: Date.now(), ...data }));

const ecUrl = env("EC_URL");
const pageUrl = env("PAGE_URL", "");
const userId = pageUrl ? "" : env("USER_ID");
const deviceId = pageUrl ? "" : env("DEVICE_ID");
const accessToken = pageUrl ? "\u0000no token" : env("ACCESS_TOKEN");
const roomId = env("ROOM_ID");
const watchRuns = Number(env("WATCH_RUNS", "0"));
const staySeconds = Number(env("STAY_SECONDS", "20"));
const screenshot = env("SCREENSHOT", "");
const expectParticipant = env("EXPECT_PARTICIPANT", "");
const expectVideo = env("EXPECT_VIDEO", "");
const hangup = env("HANGUP", "") === "1";
const watchFrames = env("WATCH_FRAMES", "") === "1";
const named = { red: [255, 0, 0], green: [0, 255, 0], blue: [0, 0, 255] };
const target = !expectVideo ? null : expectVideo === "bars" ? "bars" : (named[expectVideo] ?? expectVideo.split(",").map(Number));
// rtc-media's TestPattern::Moving, left to right.
const bars = [[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0], [255, 0, 255], [255, 0, 0], [0, 0, 255], [0, 0, 0]];

// The first remote video that shows `target`, or null.
async function findVideo(page) {
  return page.evaluate(({ target, bars }) => {
    const close = (a, b, tolerance) => a.every((c, i) => Math.abs(c - b[i]) <= tolerance);
    for (const video of document.querySelectorAll("video")) {
      if (!video.videoWidth || getComputedStyle(video).transform.startsWith("matrix(-1")) continue;
      const canvas = document.createElement("canvas");
      canvas.width = 64; canvas.height = 48;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(video, 0, 0, 64, 48);
      const data = ctx.getImageData(0, 0, 64, 48).data;
      const at = (x, y) => { const i = (y * 64 + x) * 4; return [data[i], data[i + 1], data[i + 2]]; };
      let rgb;
      if (target === "bars") {
        // The bars fill the top two thirds; the moving box may hide one of them.
        const matching = bars.filter((bar, i) => close(at(i * 8 + 4, 12), bar, 70)).length;
        if (matching < 7) continue;
        rgb = at(36, 12);
      } else {
        const sum = [0, 0, 0];
        for (let i = 0; i < data.length; i += 4) { sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; }
        rgb = sum.map((c) => Math.round(c / (data.length / 4)));
        if (!close(rgb, target, 60)) continue;
      }
      const frames = video.getVideoPlaybackQuality?.().totalVideoFrames ?? null;
      return { rgb, width: video.videoWidth, height: video.videoHeight, frames };
    }
    return null;
  }, { target, bars });
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    // The stack's LiveKit listens on 127.0.0.1 only (see livekit-client.mjs).
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
let ok = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (!pageUrl) {
    await context.addInitScript((auth) => {
      localStorage.setItem("matrix-auth-store", JSON.stringify(auth));
    }, { user_id: userId, device_id: deviceId, access_token: accessToken, passwordlessUser: false });
  }
  const page = await context.newPage();
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "error" || /livekit|MatrixRTC|membership/i.test(text)) {
      say("console", { type: msg.type(), text: text.replaceAll(accessToken, "[redacted]").replace(/\?[^\s'"]*/g, "?…").slice(0, 500) });
    }
  });
  page.on("pageerror", (error) => say("pageerror", { text: String(error).slice(0, 500) }));
  page.on("websocket", (ws) => say("websocket", { url: ws.url().split("?")[0] }));

  await page.goto(pageUrl || `${ecUrl}/room#?roomId=${encodeURIComponent(roomId)}`);
  const join = page.getByRole("button", { name: /join call/i }).first();
  await join.waitFor({ timeout: 60000 });
  say("lobby");
  await join.click();
  say("clicked-join");
  // In the call view the lobby's join button is gone and a leave/hang-up button exists.
  const leave = page.getByRole("button", { name: /leave|end call|hang up/i }).first();
  await leave.waitFor({ timeout: 60000 });
  say("in-call");
  const deadline = Date.now() + staySeconds * 1000;
  if (expectParticipant) {
    await page.getByText(expectParticipant, { exact: false }).first().waitFor({ timeout: staySeconds * 1000 });
    say("participant-visible", { participant: expectParticipant });
  }
  if (target && watchRuns > 0) {
    for (let run = 1; run <= watchRuns; run++) {
      let seen = null;
      while (!seen) { seen = await findVideo(page); if (!seen) await page.waitForTimeout(10); }
      say("video-seen", { run, ...seen });
      while (await findVideo(page)) await page.waitForTimeout(50);
      say("video-gone", { run });
    }
  } else if (target) {
    let seen = null;
    while (!seen && Date.now() < deadline) {
      seen = await findVideo(page);
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
        const now = await findVideo(page);
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
  while (Date.now() < deadline) await page.waitForTimeout(250);
  if (screenshot && (!target || watchRuns > 0)) {
    await page.screenshot({ path: screenshot });
    say("screenshot", { path: screenshot });
  }
  if (hangup) {
    await leave.click();
    say("clicked-leave");
    // Element Call sends its leave, then shows its "call ended" or lobby view.
    await leave.waitFor({ state: "detached", timeout: 30000 });
    await page.waitForTimeout(1000);
    say("hung-up");
  }
  ok = true;
} catch (error) {
  say("error", { text: String(error).replaceAll(accessToken, "[redacted]").slice(0, 1000) });
} finally {
  await browser.close();
}
say(ok ? "done" : "failed");
process.exit(ok ? 0 : 1);
