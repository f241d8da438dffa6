// The demo on node `ws` 8 (Debian node-ws), for tests/bench/run.sh.
//   node node_echo.js [PORT]          (PORT 0 or none picks a free one; printed on stderr)
// /ws     greets with "Welcome", answers each message with "new message :" + message, and joins
//         the broadcast set (the demo's `clients`).
// /pub    the fan-out variant: each message is sent to every /ws client, one send per client,
//         as the ws README's broadcast example does.
// /receive?msg=TEXT  sends TEXT to every /ws client and answers {"sent": n}.
// /index  "Hello world".
// WS_DEFLATE=1 in the environment enables permessage-deflate (`perMessageDeflate: true`, ws's
// defaults: context takeover both ways, threshold 1 KiB); ws's server default is off.
'use strict';
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const clients = new Set();

function broadcast(data, isBinary) {
  let n = 0;
  for (const c of clients) {
    if (c.readyState === WebSocket.OPEN) {
      c.send(data, { binary: isBinary });
      n++;
    }
  }
  return n;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/index') {
    res.end('Hello world');
  } else if (url.pathname === '/receive') {
    const msg = url.searchParams.get('msg');
    res.setHeader('Content-Type', 'application/json');
    if (msg === null) {
      res.statusCode = 400;
      res.end(JSON.stringify({ error: 'missing ?msg=' }));
      return;
    }
    res.end(JSON.stringify({ sent: broadcast(msg, false) }));
  } else {
    res.statusCode = 404;
    res.end('not found');
  }
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: process.env.WS_DEFLATE === '1' });

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  if (path !== '/ws' && path !== '/pub') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (path === '/pub') {
      ws.on('message', (data, isBinary) => broadcast(data, isBinary));
      return;
    }
    clients.add(ws);
    ws.on('close', () => clients.delete(ws));
    ws.on('message', (data, isBinary) => {
      ws.send(isBinary ? Buffer.concat([Buffer.from('new message :'), data])
                       : 'new message :' + data);
    });
    ws.send('Welcome');
  });
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.error(`node ws: listening on http://127.0.0.1:${server.address().port}`);
});
