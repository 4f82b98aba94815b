#!/usr/bin/env node
// A known-good stand-in for the edge's HTTP delivery, to check play.mjs itself: ffmpeg makes
// live test media (testsrc2 + a 440 Hz sine, H.264 + AAC) and a static server on 127.0.0.1
// serves it with CORS (Access-Control-Allow-Origin: *), as the edge will:
//
//   GET /live/test.m3u8 (+ segments)  live HLS, fMP4 segments of 1 s, written by one ffmpeg
//   GET /live/test.flv                live HTTP-FLV: a new ffmpeg per request, its `-f flv -`
//                                     piped into a chunked response
//
//   node fixture-server.mjs [PORT]    prints {"port":N,"hls":URL,"flv":URL} once HLS is ready
//
// Stops (and stops its ffmpegs) on SIGTERM/SIGINT, on stdin closing, or after 10 minutes; its
// ffmpegs stay in its process group, so a caller that must SIGKILL it kills the group.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';

const LIFETIME_MS = 10 * 60_000;
// Bounded sources (the server's lifetime), so an ffmpeg orphaned by a killed server ends too.
const SRC = ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25:duration=600',
  '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100:duration=600'];
const ENC = ['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
  '-g', '25', '-keyint_min', '25', '-sc_threshold', '0', '-c:a', 'aac', '-b:a', '64k', '-ar', '44100'];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgefleet-fixture-'));
const children = new Set();
function ffmpeg(args, stdio) {
  const c = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args], { stdio });
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
}

const hlsDir = path.join(dir, 'live');
fs.mkdirSync(hlsDir);
ffmpeg([...SRC, ...ENC, '-f', 'hls', '-hls_segment_type', 'fmp4', '-hls_time', '1',
  '-hls_list_size', '6', '-hls_flags', 'delete_segments+independent_segments',
  '-hls_fmp4_init_filename', 'test-init.mp4',
  '-hls_segment_filename', path.join(hlsDir, 'test-%05d.m4s'), path.join(hlsDir, 'test.m3u8')],
['ignore', 'ignore', 'inherit']);

const TYPES = { '.m3u8': 'application/vnd.apple.mpegurl', '.m4s': 'video/iso.segment', '.mp4': 'video/mp4' };
const CORS = { 'access-control-allow-origin': '*', 'access-control-allow-headers': '*', 'cache-control': 'no-cache' };

const server = http.createServer((req, res) => {
  const p = decodeURIComponent(new URL(req.url, 'http://127.0.0.1').pathname);
  if (req.method === 'OPTIONS') { res.writeHead(204, CORS); return res.end(); }
  if (p === '/live/test.flv') {
    res.writeHead(200, { ...CORS, 'content-type': 'video/x-flv' }); // no length: chunked
    const c = ffmpeg([...SRC, ...ENC, '-f', 'flv', '-'], ['ignore', 'pipe', 'inherit']);
    c.stdout.pipe(res);
    const stop = () => c.kill('SIGKILL');
    res.on('close', stop);
    c.on('exit', () => res.end());
    return;
  }
  const file = path.join(dir, path.normalize(p));
  if (!file.startsWith(dir + path.sep)) { res.writeHead(403, CORS); return res.end(); }
  fs.readFile(file, (err, data) => {
    if (err) { res.writeHead(404, CORS); return res.end(); }
    res.writeHead(200, { ...CORS, 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    res.end(data);
  });
});

function shutdown(code) {
  for (const c of children) c.kill('SIGKILL');
  server.closeAllConnections?.();
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(code);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.stdin.on('end', () => shutdown(0));
process.stdin.resume();
setTimeout(() => shutdown(0), LIFETIME_MS).unref();

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  const port = server.address().port;
  // Ready once the playlist lists a few segments (bounded: 20 s).
  const until = Date.now() + 20_000;
  const poll = setInterval(() => {
    let n = 0;
    try { n = (fs.readFileSync(path.join(hlsDir, 'test.m3u8'), 'utf8').match(/\.m4s/g) || []).length; } catch {}
    if (n >= 3 || Date.now() > until) {
      clearInterval(poll);
      const base = `http://127.0.0.1:${port}/live/test`;
      process.stdout.write(JSON.stringify({ port, ready: n >= 3, hls: `${base}.m3u8`, flv: `${base}.flv` }) + '\n');
    }
  }, 200);
});
