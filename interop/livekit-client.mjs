// Drives the official livekit-client SDK (the UMD build from node_modules) in headless Chromium as
// a subscriber that samples the pixels of a remote video track, or as a publisher of a solid-colour
// canvas.
//
// Input (environment): LIVEKIT_URL (ws://127.0.0.1:PORT), TOKEN (a LiveKit join token), MODE
// (subscribe | publish), SECONDS (how long to stay, counted from the start of the connect; default
// 20), CHROMIUM (default /usr/bin/chromium).
//   subscribe: EXPECT_IDENTITY (optional: only take video from this participant), SAMPLES (stop
//     after this many samples with width > 0; default 20).
//   publish: WIDTH, HEIGHT (default 640x480), COLOR (CSS colour, default #00ff00), CODEC (vp8 |
//     h264, default vp8).
// E2EE_KEYS (optional): "identity:index:hex,..." turns on LiveKit's frame encryption with Element
//   Call's per-participant key provider settings (HKDF key material, key ring 256, ratchet window
//   10), and sets each 16-byte key for that participant identity at that index.
// Output: one JSON object per line on stdout: {"event": "...", ...}; "t" fields are milliseconds
// since the connect started. Exit code 0 when a sample with width > 0 was printed (subscribe) or
// the track was published (publish), 1 otherwise; the last line is {"event":"done","ok":...}.
// The token is never printed.
import { chromium } from "playwright-core";
import { fileURLToPath } from "node:url";
import { readFileSync } from "node:fs";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const say = (event, data = {}) => console.log(JSON.stringify({ event, ...data }));

const token = env("TOKEN");
// Console texts may quote the signalling URL: drop query strings (they carry the token) and stacks.
const redact = (text) =>
  String(text).split("\n")[0].replaceAll(token, "[redacted]").replace(/\?[^\s'"]*/g, "?…").slice(0, 1000);
const config = {
  url: env("LIVEKIT_URL"),
  token,
  mode: env("MODE"),
  seconds: Number(env("SECONDS", "20")),
  expectIdentity: env("EXPECT_IDENTITY", ""),
  samples: Number(env("SAMPLES", "20")),
  width: Number(env("WIDTH", "640")),
  height: Number(env("HEIGHT", "480")),
  color: env("COLOR", "#00ff00"),
  codec: env("CODEC", "vp8"),
  e2eeKeys: env("E2EE_KEYS", "").split(",").filter(Boolean).map((entry) => {
    const [identity, index, hex] = entry.split(":");
    return { identity, index: Number(index), hex };
  }),
  e2eeWorker: "",
};
if (!["subscribe", "publish"].includes(config.mode)) throw new Error("MODE must be subscribe or publish");
// The UMD build defines window.LivekitClient.
const umd = fileURLToPath(new URL("node_modules/livekit-client/dist/livekit-client.umd.js", import.meta.url));
if (config.e2eeKeys.length) {
  // The E2EE worker starts from a blob of the SDK's classic build (the page has no files).
  const worker = new URL("node_modules/livekit-client/dist/livekit-client.e2ee.worker.js", import.meta.url);
  config.e2eeWorker = readFileSync(fileURLToPath(worker), "utf8");
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    // LiveKit listens on 127.0.0.1 only. By default Chromium skips loopback interfaces and hides its
    // addresses behind mDNS names; ICE then works only if another interface's address can reach
    // 127.0.0.1 (as a peer-reflexive candidate). With these two the pair is 127.0.0.1 <-> 127.0.0.1,
    // which also works in a loopback-only network namespace.
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
});
let ok = false;
// Whole-run guard in case the page never settles (the in-page logic has its own deadline).
const guard = setTimeout(() => { say("error", { text: "timeout" }); browser.close(); }, (config.seconds + 60) * 1000);
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
  page.on("console", (msg) => {
    if (msg.type() === "error") say("console", { type: msg.type(), text: redact(msg.text()) });
  });
  page.on("pageerror", (error) => say("pageerror", { text: redact(error) }));
  await page.exposeFunction("report", (event, data) => say(event, data));
  // The page takes the LiveKit server's own origin (its root answers "OK"): a secure context on
  // loopback, which WebCrypto (so E2EE) needs and Chromium's local network checks accept.
  await page.goto(config.url.replace(/^ws/, "http"));
  await page.setContent("<!doctype html><html><body style='margin:0;background:#000'></body></html>");
  await page.addScriptTag({ path: umd });

  ok = await page.evaluate(async (cfg) => {
    const LK = window.LivekitClient;
    const start = performance.now();
    const t = () => Math.round(performance.now() - start);
    const deadline = start + cfg.seconds * 1000;
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

    let encryption;
    if (cfg.e2eeKeys.length) {
      // As Element Call's MatrixKeyProvider: raw keys imported as HKDF material per identity.
      class KeyProvider extends LK.BaseKeyProvider {
        constructor() {
          super({ ratchetWindowSize: 10, keyringSize: 256 });
        }
        async set(hex, identity, index) {
          const bytes = new Uint8Array(hex.match(/../g).map((h) => parseInt(h, 16)));
          this.onSetEncryptionKey(await LK.createKeyMaterialFromBuffer(bytes.buffer), identity, index);
        }
      }
      const keyProvider = new KeyProvider();
      const blob = new Blob([cfg.e2eeWorker], { type: "text/javascript" });
      encryption = { keyProvider, worker: new Worker(URL.createObjectURL(blob)) };
      encryption.setKeys = async () => {
        for (const key of cfg.e2eeKeys) await keyProvider.set(key.hex, key.identity, key.index);
      };
    }
    const room = new LK.Room({ adaptiveStream: false, dynacast: false, encryption });
    if (encryption) {
      room.on(LK.RoomEvent.EncryptionError, (error) => report("encryption-error", { text: String(error), t: t() }));
      await room.setE2EEEnabled(true);
      await encryption.setKeys();
    }
    room.on(LK.RoomEvent.Disconnected, (reason) =>
      report("disconnected", { reason: LK.DisconnectReason[reason] ?? reason ?? null, t: t() }));

    // Subscribe: the first remote video track (from EXPECT_IDENTITY if set) goes into a <video>.
    let video = null;
    room.on(LK.RoomEvent.TrackSubscribed, (track, publication, participant) => {
      if (cfg.mode !== "subscribe" || video || track.kind !== "video") return;
      if (cfg.expectIdentity && participant.identity !== cfg.expectIdentity) return;
      report("track-subscribed", {
        identity: participant.identity, trackSid: publication.trackSid, codec: publication.mimeType, t: t(),
      });
      video = track.attach();
      Object.assign(video, { muted: true, autoplay: true, playsInline: true });
      video.style.cssText = "width:320px;height:240px;display:block";
      document.body.appendChild(video);
      video.play().catch((e) => report("error", { text: `play: ${e}` }));
    });

    await room.connect(cfg.url, cfg.token);
    report("connected", { room: room.name, identity: room.localParticipant.identity, t: t() });

    let success = false;
    if (cfg.mode === "publish") {
      const canvas = document.createElement("canvas");
      canvas.width = cfg.width;
      canvas.height = cfg.height;
      document.body.appendChild(canvas);
      const ctx = canvas.getContext("2d");
      // Repaint at ~30 fps so captureStream keeps producing frames; the 1-pixel top-left corner
      // toggles between black and white so every frame actually differs.
      let tick = 0;
      const paint = () => {
        ctx.fillStyle = cfg.color;
        ctx.fillRect(0, 0, canvas.width, canvas.height);
        ctx.fillStyle = tick++ % 2 ? "#fff" : "#000";
        ctx.fillRect(0, 0, 1, 1);
      };
      paint();
      const timer = setInterval(paint, 33);
      const [mediaTrack] = canvas.captureStream(30).getVideoTracks();
      const publication = await room.localParticipant.publishTrack(mediaTrack, {
        name: "canvas", source: LK.Track.Source.Camera, simulcast: false, videoCodec: cfg.codec,
      });
      report("published", { trackSid: publication.trackSid, codec: cfg.codec, t: t() });
      success = true;
      while (performance.now() < deadline && room.state !== "disconnected") await sleep(250);
      clearInterval(timer);
    } else {
      // Full-size canvas for point samples, 16x12 canvas for the mean and the hash.
      const full = document.createElement("canvas");
      const fullCtx = full.getContext("2d", { willReadFrequently: true });
      const small = document.createElement("canvas");
      small.width = 16;
      small.height = 12;
      const smallCtx = small.getContext("2d", { willReadFrequently: true });
      const pixel = (x, y) => Array.from(fullCtx.getImageData(Math.floor(x), Math.floor(y), 1, 1).data.slice(0, 3));
      let printed = 0;
      while (performance.now() < deadline && printed < cfg.samples && room.state !== "disconnected") {
        await sleep(250);
        if (!video) continue;
        const width = video.videoWidth;
        const height = video.videoHeight;
        const frames = video.getVideoPlaybackQuality?.().totalVideoFrames ?? null;
        if (!width || !height) {
          report("sample", { center: null, mean: null, hash: null, width: 0, height: 0, frames, t: t() });
          continue;
        }
        if (full.width !== width || full.height !== height) Object.assign(full, { width, height });
        fullCtx.drawImage(video, 0, 0, width, height);
        smallCtx.drawImage(video, 0, 0, small.width, small.height);
        // Mean colour, and an FNV-1a hash of the downscaled pixels quantized to 5 bits per channel
        // (so codec noise rarely flips it, but a moving pattern does).
        const data = smallCtx.getImageData(0, 0, small.width, small.height).data;
        const sum = [0, 0, 0];
        let hash = 0x811c9dc5;
        for (let i = 0; i < data.length; i += 4) {
          for (let c = 0; c < 3; c++) {
            sum[c] += data[i + c];
            hash = Math.imul(hash ^ (data[i + c] >> 3), 0x01000193) >>> 0;
          }
        }
        const n = data.length / 4;
        report("sample", {
          center: pixel(width / 2, height / 2),
          // Quarter points: top-left, top-right, bottom-left, bottom-right.
          points: [[1, 1], [3, 1], [1, 3], [3, 3]].map(([x, y]) => pixel((x * width) / 4, (y * height) / 4)),
          mean: sum.map((s) => Math.round(s / n)),
          hash: hash.toString(16).padStart(8, "0"),
          width, height, frames, t: t(),
        });
        printed++;
      }
      success = printed > 0;
      if (!video) report("error", { text: "no remote video track" });
    }
    await room.disconnect();
    return success;
  }, config);
} catch (error) {
  say("error", { text: redact(error) });
} finally {
  clearTimeout(guard);
  await browser.close().catch(() => {});
}
say("done", { ok });
process.exit(ok ? 0 : 1);
