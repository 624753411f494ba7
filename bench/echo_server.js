// Echo server for bench/run.py: a `ws` Websocket echo server and a plain
// HTTP responder, both on 127.0.0.1.
//
//   node bench/echo_server.js [WS_PORT] [HTTP_PORT]
//
// Port 0 (the default) picks a free port. Once both listen it prints one
// line on stdout:  READY ws=<port> http=<port>
// Websocket: every message is echoed as received (binary stays binary,
// text stays text), no compression. HTTP: GET / -> 200 "hello", keep-alive.
// Two more Websocket paths, for bench/slow_consumer.py:
//   /push?size=N  binary messages of N bytes (default 1024), for ever, as
//                 fast as TCP lets them go (the next batch once the last
//                 one is written); nothing is read or echoed;
//   /sink         reads nothing at all (the socket is paused at once).
"use strict";

const http = require("http");
const { WebSocketServer } = require("ws");

const wsPort = Number(process.argv[2] || 0);
const httpPort = Number(process.argv[3] || 0);
const HOST = "127.0.0.1";

const wsHttp = http.createServer((req, res) => {
  res.writeHead(426, { "content-type": "text/plain" });
  res.end("upgrade required");
});
const wss = new WebSocketServer({
  server: wsHttp,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
  clientTracking: false,
});
// Messages of one /push batch: written, then the next batch from the last
// one's write callback (called once the kernel took it).
const PUSH_BATCH = 256;

function push(ws, size) {
  const payload = Buffer.alloc(size, 120); // "x"
  const pump = () => {
    if (ws.readyState !== ws.OPEN) return;
    for (let i = 1; i < PUSH_BATCH; i++) ws.send(payload, { binary: true });
    ws.send(payload, { binary: true }, (err) => {
      if (!err) pump();
    });
  };
  pump();
}

wss.on("connection", (ws, req) => {
  ws.on("error", () => {});
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/push") {
    push(ws, Number(url.searchParams.get("size") || 1024));
    return;
  }
  if (url.pathname === "/sink") {
    ws.pause(); // not a byte read: TCP pushes back on the client
    return;
  }
  ws.on("message", (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});

const body = Buffer.from("hello");
const plain = http.createServer((req, res) => {
  res.writeHead(200, {
    "content-type": "text/plain",
    "content-length": body.length,
  });
  res.end(body);
});
plain.keepAliveTimeout = 60000;

let ready = 0;
function listening() {
  ready += 1;
  if (ready === 2) {
    process.stdout.write(
      `READY ws=${wsHttp.address().port} http=${plain.address().port}\n`
    );
  }
}
wsHttp.listen({ port: wsPort, host: HOST, backlog: 4096 }, listening);
plain.listen({ port: httpPort, host: HOST, backlog: 4096 }, listening);

function stop() {
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
// Exit when the parent closes our stdin (bench/run.py keeps it open).
process.stdin.on("end", stop);
process.stdin.resume();
