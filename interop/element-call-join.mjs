// Joins a MatrixRTC call with Element Call (standalone, served on 127.0.0.1) in headless Chromium.
//
// Input (environment): EC_URL, USER_ID, DEVICE_ID, ACCESS_TOKEN, ROOM_ID, STAY_SECONDS,
// SCREENSHOT (a PNG path), EXPECT_PARTICIPANT (optional: a display name or user id that must show
// up in the call view), CHROMIUM (default /usr/bin/chromium).
// Output: one JSON object per line on stdout: {"event": "...", ...}. Exit code 0 when joined (and
// the expected participant appeared), 1 otherwise. The access token is never printed.
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const say = (event, data = {}) => console.log(JSON.stringify({ event, ...data }));

const ecUrl = env("EC_URL");
const userId = env("USER_ID");
const deviceId = env("DEVICE_ID");
const accessToken = env("ACCESS_TOKEN");
const roomId = env("ROOM_ID");
const staySeconds = Number(env("STAY_SECONDS", "20"));
const screenshot = env("SCREENSHOT", "");
const expectParticipant = env("EXPECT_PARTICIPANT", "");

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
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
      say("console", { type: msg.type(), text: text.replaceAll(accessToken, "[redacted]").slice(0, 500) });
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
  await page.getByRole("button", { name: /leave|end call|hang up/i }).first().waitFor({ timeout: 60000 });
  say("in-call");
  if (expectParticipant) {
    await page.getByText(expectParticipant, { exact: false }).first().waitFor({ timeout: staySeconds * 1000 });
    say("participant-visible", { participant: expectParticipant });
  }
  const deadline = Date.now() + staySeconds * 1000;
  while (Date.now() < deadline) await page.waitForTimeout(500);
  if (screenshot) {
    await page.screenshot({ path: screenshot });
    say("screenshot", { path: screenshot });
  }
  ok = true;
} catch (error) {
  say("error", { text: String(error).slice(0, 1000) });
} finally {
  await browser.close();
}
say(ok ? "done" : "failed");
process.exit(ok ? 0 : 1);
