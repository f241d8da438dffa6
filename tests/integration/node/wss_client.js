// wss:// interop: node's `ws` against handlers/echo.lua over TLS.
// Usage: node wss_client.js URL CA_FILE|-     ("-": trust only node's own CA list)
// Checks Welcome, a short echo and a 1 MiB echo, then closes with 1000.
// Prints one JSON line: {ok, steps, tls: {protocol, authorized, alpn}, close?, error?}.
'use strict';
const fs = require('fs');
const WebSocket = require('ws');

const url = process.argv[2];
const caFile = process.argv[3];
const result = { ok: false, steps: [] };
let done = false;
const finish = (ok, why) => {
  if (done) return;
  done = true;
  result.ok = ok;
  if (why) result.error = String(why);
  console.log(JSON.stringify(result));
  process.exit(ok ? 0 : 1);
};
const timer = setTimeout(() => finish(false, 'timeout after step ' + result.steps.length), 15000);

const opts = { perMessageDeflate: false, maxPayload: 4 << 20 };
if (caFile && caFile !== '-') opts.ca = fs.readFileSync(caFile);
const ws = new WebSocket(url, opts);
const big = 'wss '.repeat(1 << 18); // 1 MiB
let state = 'welcome';

ws.on('upgrade', (res) => {
  const s = res.socket;
  result.tls = { protocol: s.getProtocol(), authorized: s.authorized, alpn: s.alpnProtocol };
});
ws.on('error', (e) => finish(false, 'error: ' + (e.code || '') + ' ' + e.message));
ws.on('message', (data, isBinary) => {
  const text = isBinary ? null : data.toString();
  if (state === 'welcome') {
    if (text !== 'Welcome') return finish(false, 'expected Welcome, got ' + text);
    result.steps.push('welcome');
    state = 'echo';
    ws.send('hi from node over tls');
  } else if (state === 'echo') {
    if (text !== 'new message :hi from node over tls') return finish(false, 'bad echo: ' + text);
    result.steps.push('echo');
    state = 'big';
    ws.send(big);
  } else if (state === 'big') {
    if (text !== 'new message :' + big) return finish(false, 'bad 1 MiB echo, length ' + data.length);
    result.steps.push('big');
    state = 'closing';
    ws.close(1000, 'node done');
  } else {
    finish(false, 'unexpected message in state ' + state);
  }
});
ws.on('close', (code, reason) => {
  clearTimeout(timer);
  result.close = { code, reason: reason.toString() };
  finish(state === 'closing' && code === 1000, state === 'closing' ? null : 'closed in state ' + state);
});
