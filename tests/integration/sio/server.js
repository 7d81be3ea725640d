// server.js - one real Socket.IO 4 server for the end-to-end tests.
//   node server.js NAME PORT
// Listens on 127.0.0.1:PORT; answers GET /healthz (HAProxy's check) with 200; on every
// Socket.IO connection emits "hello" {server: NAME, transport} and logs one line.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const [name, port] = process.argv.slice(2);
const srv = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok\n");
  }
});
const io = new Server(srv, { serveClient: false });
let live = 0;
io.on("connection", (socket) => {
  live++;
  console.log("sio %s: connect %s via %s (%d live)", name, socket.id,
              socket.conn.transport.name, live);
  socket.emit("hello", { server: name, transport: socket.conn.transport.name });
  socket.conn.on("upgrade", (t) => console.log("sio %s: upgrade %s to %s", name, socket.id, t.name));
  socket.on("disconnect", () => { live--; });
});
srv.listen(Number(port), "127.0.0.1", () => console.log("sio %s listening on %s", name, port));
