// Joins a MatrixRTC call with Element Call (standalone, served on 127.0.0.1) in headless Chromium.
//
// Input (environment): EC_URL, USER_ID, DEVICE_ID, ACCESS_TOKEN, ROOM_ID, STAY_SECONDS,
// SCREENSHOT (a PNG path), EXPECT_PARTICIPANT (optional: a display name or user id that must show
// up in the call view), EXPECT_VIDEO (optional: a colour, `red` or `R,G,B`, that a remote video
// must show at its centre; reported as `video-seen` with the wall-clock time, and the screenshot
// is taken then), HANGUP (optional, `1`: leave the call with Element Call's own button at the end
// and wait until the membership is gone from the view), CHROMIUM (default /usr/bin/chromium).
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
const userId = env("USER_ID");
const deviceId = env("DEVICE_ID");
const accessToken = env("ACCESS_TOKEN");
const roomId = env("ROOM_ID");
const staySeconds = Number(env("STAY_SECONDS", "20"));
const screenshot = env("SCREENSHOT", "");
const expectParticipant = env("EXPECT_PARTICIPANT", "");
const expectVideo = env("EXPECT_VIDEO", "");
const hangup = env("HANGUP", "") === "1";
const named = { red: [255, 0, 0], green: [0, 255, 0], blue: [0, 0, 255] };
const target = expectVideo ? (named[expectVideo] ?? expectVideo.split(",").map(Number)) : null;

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
  await context.addInitScript((auth) => {
    localStorage.setItem("matrix-auth-store", JSON.stringify(auth));
  }, { user_id: userId, device_id: deviceId, access_token: accessToken, passwordlessUser: false });
  const page = await context.newPage();
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "error" || /livekit|MatrixRTC|membership/i.test(text)) {
      say("console", { type: msg.type(), text: text.replaceAll(accessToken, "[redacted]").replace(/\?[^\s'"]*/g, "?…").slice(0, 500) });
    }
  });
  page.on("pageerror", (error) => say("pageerror", { text: String(error).slice(0, 500) }));
  page.on("websocket", (ws) => say("websocket", { url: ws.url().split("?")[0] }));

  await page.goto(`${ecUrl}/room#?roomId=${encodeURIComponent(roomId)}`);
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
  if (target) {
    // Every remote video's centre, drawn into a canvas; the first close to the target wins.
    let seen = null;
    while (!seen && Date.now() < deadline) {
      seen = await page.evaluate((target) => {
        for (const video of document.querySelectorAll("video")) {
          if (!video.videoWidth) continue;
          const canvas = document.createElement("canvas");
          canvas.width = 16; canvas.height = 16;
          const ctx = canvas.getContext("2d");
          ctx.drawImage(video, video.videoWidth / 2 - 8, video.videoHeight / 2 - 8, 16, 16, 0, 0, 16, 16);
          const d = ctx.getImageData(8, 8, 1, 1).data;
          const rgb = [d[0], d[1], d[2]];
          if (rgb.every((c, i) => Math.abs(c - target[i]) <= 60)) {
            return { rgb, width: video.videoWidth, height: video.videoHeight };
          }
        }
        return null;
      }, target);
      if (!seen) await page.waitForTimeout(50);
    }
    if (!seen) throw new Error(`no remote video showed ${expectVideo} within ${staySeconds} s`);
    say("video-seen", seen);
    if (screenshot) {
      await page.waitForTimeout(500);
      await page.screenshot({ path: screenshot });
      say("screenshot", { path: screenshot });
    }
  }
  while (Date.now() < deadline) await page.waitForTimeout(250);
  if (screenshot && !target) {
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
