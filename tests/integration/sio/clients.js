// clients.js - N real socket.io-client 4 clients through HAProxy, as browsers would:
// each keeps its own cookies (withCredentials: the Node client's cookie jar), starts
// with the polling handshake, then upgrades to WebSocket.
//   node clients.js URL N [TIMEOUT_MS]
// Prints one JSON object: {connected, upgraded, failed, servers: {name: n},
// split: clients whose polls and upgrade reached different servers, errors: [...]}.
"use strict";
const { io } = require("socket.io-client");

const [url, nStr, tStr] = process.argv.slice(2);
const n = Number(nStr);
const timeout = Number(tStr || 10000);
const out = { connected: 0, upgraded: 0, failed: 0, servers: {}, split: 0, errors: [] };

function one() {
  return new Promise((resolve) => {
    const s = io(url, { transports: ["polling", "websocket"], withCredentials: true,
                        reconnection: false, timeout, forceNew: true });
    let first = null;
    const done = (ok, why) => {
      if (!ok) {
        out.failed++;
        if (out.errors.length < 5) out.errors.push(String(why));
      }
      s.close();
      resolve();
    };
    const timer = setTimeout(() => done(false, "no upgrade in time"), timeout);
    s.on("hello", (h) => {
      if (first === null) {
        first = h.server;
        out.connected++;
        out.servers[h.server] = (out.servers[h.server] || 0) + 1;
      } else if (h.server !== first) {
        out.split++;
      }
    });
    s.on("connect_error", (e) => { clearTimeout(timer); done(false, e.message); });
    s.io.engine && s.io.engine.on("upgrade", () => {
      out.upgraded++;
      clearTimeout(timer);
      // one more round trip on the upgraded transport, then done
      setTimeout(() => done(true), 50);
    });
  });
}

(async () => {
  const batch = 10;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - i) }, one));
  }
  console.log(JSON.stringify(out));
  process.exit(0);
})();
