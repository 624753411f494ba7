// HTTP/1.1 and HTTP/2 (h2c) on Node, for bench/http2.py: GET / -> 200 "hello",
// and a Websocket echo on /ws over both: HTTP/1.1 upgrade (the `ws` package)
// and RFC 8441 extended CONNECT over HTTP/2 (frames parsed here: Node's
// http2 carries the stream, nothing in `ws` speaks RFC 8441).
//
//   node bench/h2_server.js
//
// Listens on two free ports of 127.0.0.1 and prints one line once both do:
//   READY http1=<port> http2=<port>
"use strict";

const http = require("http");
const http2 = require("http2");
const { WebSocketServer } = require("ws");

const answer = (res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": "5" });
  res.end("hello");
};
const h1 = http.createServer((req, res) => answer(res));
h1.keepAliveTimeout = 60000;
const wss = new WebSocketServer({ server: h1, path: "/ws", perMessageDeflate: false });
wss.on("connection", (ws) => ws.on("message", (data, binary) => ws.send(data, { binary })));

// One Websocket over an HTTP/2 stream: echo each client frame unmasked, answer a
// ping with a pong and a close with a close (then end the stream).
const echoFrames = (stream) => {
  let buffer = Buffer.alloc(0);
  stream.on("data", (chunk) => {
    buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
    for (;;) {
      if (buffer.length < 2) return;
      const opcode = buffer[0] & 0x0f;
      let length = buffer[1] & 0x7f;
      let at = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        at = 10;
      }
      if (buffer.length < at + 4 + length) return;
      const mask = buffer.subarray(at, at + 4);
      const payload = Buffer.from(buffer.subarray(at + 4, at + 4 + length));
      for (let i = 0; i < length; i++) payload[i] ^= mask[i & 3];
      buffer = buffer.subarray(at + 4 + length);
      const head =
        length < 126
          ? Buffer.from([0x80 | (opcode === 9 ? 10 : opcode), length])
          : length < 65536
            ? Buffer.from([0x80 | opcode, 126, length >> 8, length & 0xff])
            : Buffer.concat([Buffer.from([0x80 | opcode, 127]), bigLength(length)]);
      stream.write(Buffer.concat([head, payload]));
      if (opcode === 8) {
        stream.end();
        return;
      }
    }
  });
};
const bigLength = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

const h2 = http2.createServer({
  settings: { maxConcurrentStreams: 1000, enableConnectProtocol: true },
});
h2.on("stream", (stream, headers) => {
  if (headers[":method"] === "CONNECT" && headers[":protocol"] === "websocket") {
    stream.respond({ ":status": 200 });
    echoFrames(stream);
  } else {
    stream.respond({ ":status": 200, "content-type": "text/plain", "content-length": "5" });
    stream.end("hello");
  }
});
h2.on("sessionError", () => {});

h1.listen(0, "127.0.0.1", () => {
  h2.listen(0, "127.0.0.1", () => {
    process.stdout.write(`READY http1=${h1.address().port} http2=${h2.address().port}\n`);
  });
});
process.on("SIGTERM", () => process.exit(0));
