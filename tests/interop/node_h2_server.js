// An HTTP/2 server on Node's own http2 module, for tests/interop/test_http2.py.
//
//   node node_h2_server.js [KEY CERT]
//
// h2c (prior knowledge) without arguments; TLS with ALPN h2 given a key and
// a certificate (PEM files). Listens on 127.0.0.1, a free port, and prints
// "READY <port>" once it does. Routes:
//   GET /          -> 200 "hello"
//   GET /trailers  -> 200 "body", then the trailer x-checksum: 42
//   GET /reset     -> RST_STREAM(REFUSED_STREAM)
//   POST /echo     -> 200 with the request body
"use strict";

const http2 = require("http2");
const fs = require("fs");

const [key, cert] = process.argv.slice(2);
const server = key
  ? http2.createSecureServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) })
  : http2.createServer();

server.on("stream", (stream, headers) => {
  stream.on("error", () => {}); // a reset stream (ours, or the client's cancel) is no crash
  const path = headers[":path"];
  if (path === "/reset") {
    stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
  } else if (path === "/trailers") {
    stream.respond({ ":status": 200 }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "x-checksum": "42" }));
    stream.end("body");
  } else if (path === "/echo") {
    const parts = [];
    stream.on("data", (part) => parts.push(part));
    stream.on("end", () => {
      stream.respond({ ":status": 200 });
      stream.end(Buffer.concat(parts));
    });
  } else {
    stream.respond({ ":status": 200, "content-type": "text/plain" });
    stream.end("hello");
  }
});
server.on("sessionError", () => {});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`READY ${server.address().port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
