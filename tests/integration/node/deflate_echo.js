// permessage-deflate interop: node's `ws` (8.x) against a wspush echo route.
// Usage: node deflate_echo.js URL 'JSON perMessageDeflate options'
// Sends text and binary messages of several sizes (around the 1 KiB threshold,
// compressible and not, up to 1 MiB), one at a time, and checks that each echo
// is byte-exact. Prints one JSON line: {ok, extensions, sent, steps, error?, close?}.
// Exits 0 on success, 1 on failure.
'use strict';
const WebSocket = require('ws');

const url = process.argv[2];
const pmd = JSON.parse(process.argv[3] || 'true');
const result = { ok: false, steps: [], sent: 0 };
let done = false;
const finish = (ok, why) => {
  if (done) return;
  done = true;
  result.ok = ok;
  if (why) result.error = String(why);
  console.log(JSON.stringify(result));
  process.exit(ok ? 0 : 1);
};
const timer = setTimeout(() => finish(false, 'timeout after step ' + result.steps.length), 20000);

// Deterministic bytes: an LCG, either full-range (incompressible) or from a
// small alphabet (compressible).
function bytes(n, seed, alphabet) {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = alphabet ? alphabet.charCodeAt((x >>> 16) % alphabet.length) : (x >>> 16) & 0xff;
  }
  return b;
}
const words = 'the quick brown fox jumps over the lazy dog ';
const messages = [];
for (const n of [0, 1, 100, 1023, 1024, 1025, 4096, 65536]) {
  messages.push({ name: 'text' + n, data: bytes(n, n + 1, words).toString('latin1'), binary: false });
  messages.push({ name: 'bin' + n, data: bytes(n, n + 7), binary: true });
}
messages.push({ name: 'text-utf8', data: 'żółw 🐢 ' .repeat(2000), binary: false });
messages.push({ name: 'text1M', data: bytes(1 << 20, 99, words).toString('latin1'), binary: false });
messages.push({ name: 'bin1M-zeros', data: Buffer.alloc(1 << 20), binary: true });
messages.push({ name: 'bin1M-random', data: bytes(1 << 20, 1234), binary: true });
// the same message twice: with context takeover the second refers to the first
messages.push({ name: 'text4k-again', data: bytes(4096, 4097, words).toString('latin1'), binary: false });

const ws = new WebSocket(url, { perMessageDeflate: pmd, maxPayload: 8 << 20 });
let i = 0;

function sendNext() {
  if (i === messages.length) {
    ws.close(1000, 'done');
    return;
  }
  const m = messages[i];
  ws.send(m.data, { binary: m.binary });
  result.sent++;
}

// the response header itself (ws.extensions only lists the names)
ws.on('upgrade', (res) => { result.extensions = res.headers['sec-websocket-extensions'] || ''; });
ws.on('open', () => {
  result.names = ws.extensions;
  sendNext();
});
ws.on('error', (e) => finish(false, 'error: ' + e.message));
ws.on('message', (data, isBinary) => {
  const m = messages[i];
  if (!m) return finish(false, 'unexpected extra message');
  if (isBinary !== m.binary) return finish(false, m.name + ': type changed, binary=' + isBinary);
  const want = m.binary ? m.data : Buffer.from(m.data, 'utf8');
  if (!Buffer.from(data).equals(want)) {
    return finish(false, m.name + ': echo differs (got ' + data.length + ' bytes, want ' + want.length + ')');
  }
  result.steps.push(m.name);
  i++;
  sendNext();
});
ws.on('close', (code, reason) => {
  clearTimeout(timer);
  result.close = { code, reason: reason.toString() };
  if (i !== messages.length) return finish(false, 'closed after ' + i + ' of ' + messages.length + ' with ' + code);
  finish(code === 1000, code === 1000 ? null : 'close code ' + code);
});
