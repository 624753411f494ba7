// HTTP/1.1 and HTTP/2 (h2c) on Node, for bench/http2.py: GET / -> 200 "hello".
//
//   node bench/h2_server.js
//
// Listens on two free ports of 127.0.0.1 and prints one line once both do:
//   READY http1=<port> http2=<port>
"use strict";

const http = require("http");
const http2 = require("http2");

const answer = (res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": "5" });
  res.end("hello");
};
const h1 = http.createServer((req, res) => answer(res));
h1.keepAliveTimeout = 60000;
const h2 = http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, (req, res) =>
  answer(res)
);
h2.on("sessionError", () => {});

h1.listen(0, "127.0.0.1", () => {
  h2.listen(0, "127.0.0.1", () => {
    process.stdout.write(`READY http1=${h1.address().port} http2=${h2.address().port}\n`);
  });
});
process.on("SIGTERM", () => process.exit(0));
