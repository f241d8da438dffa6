// Interop client: node's `ws` against wspush. Usage: node interop_client.js URL
// Prints one JSON line with what happened; exits 0 on success, 1 on failure.
'use strict';
const WebSocket = require('ws');

const url = process.argv[2];
const result = { steps: [] };
const fail = (why) => {
  result.ok = false;
  result.error = String(why);
  console.log(JSON.stringify(result));
  process.exit(1);
};
const timer = setTimeout(() => fail('timeout in step ' + result.steps.length), 10000);

const ws = new WebSocket(url);   // default options: offers permessage-deflate like a real client
const binary = Buffer.from([0, 1, 2, 253, 254, 255]);
let state = 'welcome';

ws.on('error', (e) => fail('error: ' + e.message));
ws.on('message', (data, isBinary) => {
  if (state === 'welcome') {
    if (isBinary || data.toString() !== 'Welcome') return fail('expected Welcome, got ' + data);
    result.steps.push('welcome');
    state = 'echo';
    ws.send('hi from node');
  } else if (state === 'echo') {
    if (isBinary || data.toString() !== 'new message :hi from node') return fail('bad echo: ' + data);
    result.steps.push('echo');
    state = 'binary';
    ws.send(binary, { binary: true });
  } else if (state === 'binary') {
    if (!isBinary || !Buffer.from(data).equals(binary)) return fail('bad binary echo: ' + data.toString('hex'));
    result.steps.push('binary');
    state = 'closing';
    ws.close(4001, 'node says bye');
  } else {
    fail('unexpected message in state ' + state);
  }
});
ws.on('close', (code, reason) => {
  clearTimeout(timer);
  result.close = { code, reason: reason.toString() };
  result.ok = state === 'closing' && code === 4001;
  if (!result.ok) result.error = 'closed in state ' + state + ' with ' + code;
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
});
