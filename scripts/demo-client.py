#!/usr/bin/python3
"""The live part of `make run`: shows a WebSocket client keeping its server.

    demo-client.py --url ws://127.0.0.1:8080/ws --redis-port 6379 --stickyctl agent/stickyctl

1. a new client connects (no cookie): prints the server that answered and the
   Set-Cookie HAProxy added with the session id stickyd minted;
2. it reconnects with that cookie 3 times: the same server each time;
3. `redis-cli GET sticky:{be_ws}:s:<record id>`: the pin in Redis;
4. with the client's connection and two other new clients held open,
   `stickyctl status be_ws`: the live connection counts per server;
5. once they close, the counts again (HAProxy's close lines reach the agent).
Exits 0 only if every reconnect landed on the first server. Talks to 127.0.0.1 only.
Runs under /usr/bin/python3 (Debian's python3-websockets).
"""
import argparse
import asyncio
import base64
import http.cookies
import json
import subprocess
import sys

import websockets

COOKIE = "stickysid"
FALLBACK_COOKIE = "stickysrv"  # HAProxy's own, for when the agent is down
BACKEND = "be_ws"


def cookie_of(set_cookies, name=COOKIE):
    for v in set_cookies:
        c = http.cookies.SimpleCookie()
        c.load(v)
        if name in c:
            return c[name].value
    return None


def record_id(sid):
    """The session's record id (agent/sid.h): "2" + b64url of the cookie's rid."""
    raw = base64.urlsafe_b64decode(sid[1:] + "=" * (-len(sid[1:]) % 4))
    return "2" + base64.urlsafe_b64encode(raw[1:17]).decode().rstrip("=")


async def connect(url, jar=None):
    """Open a WebSocket through HAProxy with the cookies in jar ({name: value}, as a
    browser keeps them); returns (ws, server's hello, Set-Cookie list)."""
    headers = {"Cookie": "; ".join("%s=%s" % kv for kv in jar.items())} if jar else {}
    ws = await websockets.connect(url, extra_headers=headers, open_timeout=5,
                                  close_timeout=1, ping_interval=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return ws, hello, ws.response_headers.get_all("Set-Cookie")


def run(cmd_text, argv):
    """Print a shell-like command line and its output, indented."""
    print("$ " + cmd_text, flush=True)
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    out = p.stdout.decode(errors="replace").rstrip("\n")
    for line in out.splitlines():
        print("    " + line)
    return p.returncode


async def demo(args):
    print("--- 1. a new client connects (no cookie)")
    ws, hello, set_cookies = await connect(args.url)
    first = hello["server"]
    sid = cookie_of(set_cookies)
    jar = {n: cookie_of(set_cookies, n) for n in (COOKIE, FALLBACK_COOKIE)
           if cookie_of(set_cookies, n) is not None}
    print("connect #1 (new)       -> server %s" % first)
    for v in set_cookies:
        print("    Set-Cookie: %s" % v)
    await ws.close()
    if sid is None:
        print("FAILED: HAProxy sent no %s cookie (is stickyd answering?)" % COOKIE)
        return 1

    print("\n--- 2. the same client reconnects 3 times with its cookie")
    servers = [first]
    for i in range(2, 5):
        ws, hello, set_cookies = await connect(args.url, jar)
        servers.append(hello["server"])
        print("connect #%d (cookie)    -> server %s   (server saw Cookie: %s; Set-Cookie: %s)"
              % (i, hello["server"], hello.get("cookie"),
                 "none" if not set_cookies else "; ".join(set_cookies)))
        await ws.close()
    same = all(s == first for s in servers)
    if same:
        print("RESULT: same server every time: %s (%d of %d connections)"
              % (first, len(servers), len(servers)))
    else:
        print("RESULT: DIFFERENT servers: %s" % " ".join(servers))

    print("\n--- 3. the pin in Redis")
    key = "sticky:{%s}:s:%s" % (BACKEND, record_id(sid))
    redis = ["/usr/bin/redis-cli", "-p", str(args.redis_port)]
    await asyncio.sleep(0.1)  # the agent writes the record right after its answer
    run("redis-cli -p %d GET '%s'" % (args.redis_port, key), redis + ["GET", key])
    run("redis-cli -p %d PTTL '%s'" % (args.redis_port, key), redis + ["PTTL", key])

    print("\n--- 4. live connections: this client (%s) and two new clients, held open"
          % first)
    held = [await connect(args.url, jar)]
    held += [await connect(args.url) for _ in range(2)]
    print("open now: " + ", ".join("%s%s" % (h[1]["server"], " (ours)" if i == 0 else " (new)")
                                   for i, h in enumerate(held)))
    await asyncio.sleep(0.3)  # the agent counts them in its next batched write (10 ms)
    rc = run("agent/stickyctl --redis 127.0.0.1:%d status %s" % (args.redis_port, BACKEND),
             [args.stickyctl, "--redis", "127.0.0.1:%d" % args.redis_port, "status", BACKEND])
    if rc != 0:
        print("(stickyctl exited %d; the raw counts:)" % rc)
        ckey = "sticky:{%s}:conns" % BACKEND
        run("redis-cli -p %d HGETALL '%s'" % (args.redis_port, ckey),
            redis + ["HGETALL", ckey])
    for ws, _, _ in held:
        await ws.close()
    if rc == 0:
        # HAProxy logs each closed tunnel to the agent's syslog listener, which takes
        # the connection off the counts: wait (a few seconds at most) to show it.
        print("\n--- 5. the three close: HAProxy's close lines take them off the counts")
        argv = [args.stickyctl, "--redis", "127.0.0.1:%d" % args.redis_port, "status",
                BACKEND, "--json"]
        for _ in range(50):
            p = subprocess.run(argv, stdout=subprocess.PIPE, timeout=10)
            doc = json.loads(p.stdout) if p.returncode == 0 else {}
            if doc.get("backends") and doc["backends"][0].get("total_conns") == 0:
                break
            await asyncio.sleep(0.1)
        run("agent/stickyctl --redis 127.0.0.1:%d status %s" % (args.redis_port, BACKEND),
            argv[:-1])
    return 0 if same else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--stickyctl", required=True)
    args = ap.parse_args()
    try:
        return asyncio.run(demo(args))
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
        print("FAILED: %r" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
