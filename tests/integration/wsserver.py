#!/usr/bin/python3
"""A WebSocket echo server that says which server it is (python3-websockets 10.x).

    wsserver.py --name ws1 [--host 127.0.0.1] [--port 0] [--port-file FILE]

- WebSocket: on connect it sends one text message, JSON
  {"server": NAME, "path": PATH, "cookie": COOKIE-HEADER-or-null}, then echoes
  every message back unchanged until the client closes.
- Plain HTTP GET (health checks, Engine.IO long-polling such as
  /socket.io/?EIO=4&transport=polling): 200 with an "X-Server: NAME" header and
  the JSON body {"server": NAME, "path": PATH}; /healthz answers "ok".
Port 0 picks a free port; the chosen one is printed ("listening on HOST:PORT")
and written to --port-file, so a test can start it without racing for ports.
Used by the integration tests and by `make run`.
"""
import argparse
import asyncio
import http
import json
import os
import signal
import sys

import websockets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    args = ap.parse_args()
    name = args.name
    live = set()

    def log(msg):
        print("wsserver %s: %s" % (name, msg), flush=True)

    async def process_request(path, headers):
        # Let WebSocket handshakes through; answer every other request here.
        if "websocket" in headers.get("Upgrade", "").lower():
            return None
        if path.split("?", 1)[0] == "/healthz":
            return http.HTTPStatus.OK, [("Content-Type", "text/plain")], b"ok\n"
        body = json.dumps({"server": name, "path": path}).encode()
        log("http %s" % path)
        return (http.HTTPStatus.OK,
                [("Content-Type", "application/json"), ("X-Server", name)], body + b"\n")

    async def handler(ws):
        path = ws.path
        live.add(ws)
        log("open %s (%d live)" % (path, len(live)))
        try:
            await ws.send(json.dumps({"server": name, "path": path,
                                      "cookie": ws.request_headers.get("Cookie")}))
            async for msg in ws:
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            live.discard(ws)
            log("close %s (%d live)" % (path, len(live)))

    async def run():
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
        async with websockets.serve(handler, args.host, args.port,
                                    process_request=process_request,
                                    ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            if args.port_file:
                tmp = args.port_file + ".tmp"
                with open(tmp, "w") as f:
                    f.write("%d\n" % port)
                os.replace(tmp, args.port_file)
            log("listening on %s:%d" % (args.host, port))
            await stop
        log("stopped")

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
