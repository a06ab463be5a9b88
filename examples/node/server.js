// A Node.js web app using only the http module.
"use strict";

const http = require("http");

const host = process.env.CF_INSTANCE_IP || "0.0.0.0";
const port = Number(process.env.PORT || 8080);

const server = http.createServer((request, response) => {
  console.log(`request ${request.method} ${request.url}`);
  const body = JSON.stringify({
    app: "node",
    node: process.version,
    index: process.env.CF_INSTANCE_INDEX || null,
  });
  response.writeHead(200, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(body),
  });
  response.end(body);
});

server.listen(port, host, () => {
  console.log(`node app listening on ${host}:${port}`);
});

process.on("SIGTERM", () => server.close(() => process.exit(0)));
