#!/usr/bin/env node
// Plays an HLS (hls.js) or HTTP-FLV (mpegts.js) URL in headless Chromium and reports what
// played, as ONE JSON line on stdout; exit code 0 iff it played.
//
//   node play.mjs URL KIND SCREENSHOT_PATH [SECONDS]     KIND = hls | flv, SECONDS default 3
//
// A tiny static server on 127.0.0.1 (port 0) serves the player page and the player library
// from node_modules; Chromium (Debian's, through playwright-core) loads the page, which plays
// URL muted in a <video>. The page counts media time that really played (currentTime moving
// forward in small steps; a seek or a live-edge jump does not count) and the script waits until
// SECONDS of it played, or gives up after 30 s. Every wait is bounded, the browser is always
// closed, and traffic stays on loopback: URL must name a loopback host, and Chromium gets a
// dead loopback proxy for everything else.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PLAY_TIMEOUT_MS = 30_000; // waiting for SECONDS of media, counted from the page's load
// Chromium usually starts in 2 s here, but once in a while (seen in CI, first start on a fresh
// machine) it hangs after launch and never opens its pipe: such an attempt is killed at
// LAUNCH_TIMEOUT_MS and one more is made with a fresh profile (noted in `launch_retries`).
const LAUNCH_TIMEOUT_MS = 25_000;
const LAUNCH_ATTEMPTS = 2;
// The whole run: every launch attempt, the page, the play wait, screenshot and close; below
// the Rust side's limit (tests/src/lib.rs browser_play, 110 s).
const WATCHDOG_MS = LAUNCH_ATTEMPTS * LAUNCH_TIMEOUT_MS + 10_000 + PLAY_TIMEOUT_MS + 15_000;
const CHROMIUM = process.env.EDGEFLEET_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  // Everything that is not loopback goes to a proxy on a closed loopback port and fails.
  '--proxy-server=http://127.0.0.1:9',
  '--proxy-bypass-list=localhost;127.0.0.0/8;[::1]',
  '--no-default-browser-check',
  '--disable-features=MediaRouter,OptimizationHints,Translate,DialMediaRouteProvider',
];

const [url, kind, shotPath, secondsArg] = process.argv.slice(2);
const seconds = secondsArg === undefined ? 3 : Number(secondsArg);
const result = {
  ok: false,
  kind: kind ?? null,
  url: url ?? null,
  advanced: 0,
  currentTime: null,
  videoWidth: 0,
  videoHeight: 0,
  frames: 0,
  errors: [],
  latency_s: null,
  launch_s: null,
  launch_retries: [],
};

let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = code;
  // Anything still open (a stuck socket) must not keep the process alive.
  setTimeout(() => process.exit(code), 2000).unref();
}

function usage(why) {
  result.errors.push(`usage: ${why}: node play.mjs URL hls|flv SCREENSHOT_PATH [SECONDS]`);
  finish(2);
}

function loopbackHost(u) {
  const h = u.hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>edgefleet player</title>
<style>html,body{margin:0;background:#000;color:#0f0;font:14px monospace}
video{display:block;width:960px;height:540px;background:#111}#s{padding:4px}</style>
</head><body><video id="v" muted autoplay playsinline></video><div id="s">starting</div>
<script src="/player.js"></script>
<script>
(function () {
  const q = new URLSearchParams(location.search);
  const url = q.get('url'), kind = q.get('kind');
  const v = document.getElementById('v'), s = document.getElementById('s');
  const st = window.__play = { advanced: 0, errors: [], fatal: null, started: false, latency: null };
  function err(e, fatal) { st.errors.push(e); if (fatal && !st.fatal) st.fatal = e; }
  v.muted = true;
  v.addEventListener('error', () => {
    const e = v.error; err('video element error ' + (e ? e.code + ' ' + e.message : ''), true);
  });
  v.addEventListener('playing', () => { st.started = true; });
  if (kind === 'hls') {
    if (!window.Hls || !Hls.isSupported()) { err('hls.js is not supported in this browser', true); return; }
    const hls = st.hls = new Hls({ lowLatencyMode: true, debug: false });
    hls.on(Hls.Events.ERROR, (_, d) => {
      err('hls ' + (d.fatal ? 'fatal ' : '') + d.type + ' ' + d.details +
          (d.response && d.response.code ? ' http ' + d.response.code : '') +
          (d.error && d.error.message ? ' ' + d.error.message : ''), d.fatal);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => { v.play().catch(e => err('play(): ' + e, false)); });
    hls.loadSource(url);
    hls.attachMedia(v);
  } else if (kind === 'flv') {
    if (!window.mpegts || !mpegts.isSupported()) { err('mpegts.js is not supported in this browser', true); return; }
    const p = st.flv = mpegts.createPlayer({ type: 'flv', isLive: true, url: url },
      { enableWorker: false, lazyLoad: false, liveBufferLatencyChasing: false });
    p.on(mpegts.Events.ERROR, (type, detail, info) => {
      err('mpegts ' + type + ' ' + detail + (info && info.msg ? ' ' + info.msg : '') +
          (info && info.code ? ' code ' + info.code : ''), true);
    });
    p.attachMediaElement(v);
    p.load();
    const r = p.play(); if (r && r.catch) r.catch(e => err('play(): ' + e, false));
  } else {
    err('unknown kind ' + kind, true); return;
  }
  // Media time that really played: small forward steps of currentTime between polls (100 ms);
  // a seek or a jump to the live edge is not counted.
  let last = null;
  setInterval(() => {
    const t = v.currentTime;
    if (last !== null && !v.seeking) {
      const d = t - last;
      if (d > 0 && d < 1.0) st.advanced += d;
    }
    last = t;
    if (st.hls && typeof st.hls.latency === 'number' && isFinite(st.hls.latency)) st.latency = st.hls.latency;
    s.textContent = kind + ' t=' + t.toFixed(2) + ' played=' + st.advanced.toFixed(2) + 's ' +
      v.videoWidth + 'x' + v.videoHeight + (st.latency !== null ? ' latency=' + st.latency.toFixed(2) + 's' : '');
  }, 100);
})();
</script></body></html>`;

function startServer(libPath) {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://127.0.0.1').pathname;
    if (p === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
    } else if (p === '/player.js') {
      res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' });
      fs.createReadStream(libPath).pipe(res);
    } else if (p === '/favicon.ico') {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

// A browser that was just killed may still be writing its profile: retry, never throw.
function removeProfile(dir) {
  try { fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 }); }
  catch (e) { result.launch_retries.push(`could not remove ${dir}: ${e.message}`); }
}

async function main() {
  if (!url || !kind || !shotPath) return usage('missing arguments');
  if (kind !== 'hls' && kind !== 'flv') return usage(`KIND must be hls or flv, not ${kind}`);
  if (!(seconds > 0)) return usage(`SECONDS must be a positive number, not ${secondsArg}`);
  let u;
  try { u = new URL(url); } catch { return usage(`not a URL: ${url}`); }
  if (!/^https?:$/.test(u.protocol) || !loopbackHost(u)) {
    return usage(`URL must be http(s) on a loopback host (network rule), not ${url}`);
  }
  const lib = kind === 'hls'
    ? path.join(HERE, 'node_modules/hls.js/dist/hls.min.js')
    : path.join(HERE, 'node_modules/mpegts.js/dist/mpegts.js');
  if (!fs.existsSync(lib)) {
    result.errors.push(`${lib} is missing: run npm ci --prefix tests/browser`);
    return finish(1);
  }

  const runStart = Date.now();
  let server, context, profile;
  const watchdog = setTimeout(() => {
    result.errors.push(`watchdog: the whole run took over ${WATCHDOG_MS} ms`);
    try { context?.close().catch(() => {}); } catch {}
    finish(1);
  }, WATCHDOG_MS);
  try {
    const { chromium } = await import('playwright-core');
    server = await startServer(lib);
    const page_url = `http://127.0.0.1:${server.address().port}/?kind=${kind}&url=${encodeURIComponent(url)}`;
    for (let attempt = 1; ; attempt++) {
      profile = fs.mkdtempSync(path.join(os.tmpdir(), 'edgefleet-play-'));
      const tried = Date.now();
      try {
        context = await chromium.launchPersistentContext(profile, {
          executablePath: CHROMIUM,
          headless: true,
          args: CHROMIUM_ARGS,
          viewport: { width: 960, height: 580 },
          timeout: LAUNCH_TIMEOUT_MS,
        });
        break;
      } catch (e) {
        removeProfile(profile);
        profile = null;
        if (attempt >= LAUNCH_ATTEMPTS) throw e;
        const first = String(e && e.message ? e.message : e).split('\n')[0];
        result.launch_retries.push(`attempt ${attempt} failed after ${((Date.now() - tried) / 1000).toFixed(1)} s: ${first}`);
      }
    }
    result.launch_s = Math.round((Date.now() - runStart) / 100) / 10;
    const page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('console', m => { if (m.type() === 'error') result.errors.push('console: ' + m.text()); });
    page.on('pageerror', e => result.errors.push('pageerror: ' + e.message));
    await page.goto(page_url, { waitUntil: 'load', timeout: 10_000 });

    const playStart = Date.now();
    const deadline = Date.now() + PLAY_TIMEOUT_MS;
    let st;
    for (;;) {
      st = await page.evaluate(() => {
        const v = document.getElementById('v');
        const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
        const p = window.__play || {};
        return {
          advanced: p.advanced || 0, fatal: p.fatal || null, errors: p.errors || [],
          latency: p.latency ?? null, currentTime: v.currentTime,
          w: v.videoWidth, h: v.videoHeight, frames: q ? q.totalVideoFrames : 0,
        };
      });
      if (st.fatal || st.advanced >= seconds || Date.now() > deadline) break;
      await new Promise(r => setTimeout(r, 200));
    }
    result.advanced = Math.round(st.advanced * 1000) / 1000;
    result.currentTime = st.currentTime;
    result.videoWidth = st.w;
    result.videoHeight = st.h;
    result.frames = st.frames;
    result.latency_s = kind === 'hls' && st.latency !== null ? Math.round(st.latency * 1000) / 1000 : null;
    result.errors.unshift(...st.errors);
    if (st.fatal) result.errors.push('stopped on a fatal player error');
    else if (st.advanced < seconds) result.errors.push(`only ${result.advanced} s of media played in ${((Date.now() - playStart) / 1000).toFixed(1)} s (wanted ${seconds})`);
    else if (!(st.w > 0 && st.h > 0)) result.errors.push('media played but the video has no size (no video track?)');
    result.ok = !st.fatal && st.advanced >= seconds && st.w > 0 && st.h > 0;
    try {
      fs.mkdirSync(path.dirname(path.resolve(shotPath)), { recursive: true });
      await page.screenshot({ path: shotPath, timeout: 10_000 });
    } catch (e) {
      result.errors.push('screenshot: ' + e.message);
      result.ok = false;
    }
  } catch (e) {
    // Playwright's launch errors carry the browser's log after the first line: keep some.
    result.errors.push(String(e && e.message ? e.message.slice(0, 3000) : e));
    result.ok = false;
  } finally {
    if (context) await withTimeout(context.close(), 10_000, 'closing the browser').catch(e => result.errors.push(e.message));
    if (server) { server.closeAllConnections?.(); server.close(); }
    if (profile) removeProfile(profile);
    clearTimeout(watchdog);
  }
  finish(result.ok ? 0 : 1);
}

main().catch(e => { result.errors.push(String(e)); finish(1); });
