"""Process helpers for stickyd's python integration tests.

Starts REAL processes (redis-server, agent/stickyd, /usr/sbin/haproxy, WebSocket
echo servers) in a test's temporary directory, on free loopback ports, and makes
sure they stop: every process is registered in a ProcGroup that the `procs`
fixture stops at teardown, and an atexit hook kills whatever is still running.
Each process writes to its own log file; conftest.py attaches them to failing
test reports. Nothing here talks to anything but 127.0.0.1.

Public API (see conftest.py for the fixtures):
    free_port(), wait_until(), http_get(), ws_open(), h2_ws_open(), WsPool,
    parse_cookie(), agent_stats(), rkey(), hash_ints(), session_record(),
    set_server_state()
    Proc, Redis, RedisCluster, Stickyd, Haproxy, WsServer, ProcGroup, Lb, Stack,
    lb_spec(), FAST_PERIODS
"""
import asyncio
import atexit
import concurrent.futures
import http.cookies
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import websockets

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
HAPROXY = os.environ.get("HAPROXY", "/usr/sbin/haproxy")
REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
STICKYD = Path(os.environ.get("STICKYD", REPO / "agent" / "stickyd"))
RENDER = REPO / "scripts" / "render-haproxy.py"
WSSERVER = Path(__file__).resolve().parent / "wsserver.py"
LOOPBACK = "127.0.0.1"

# Every Proc still running, for the atexit safety net.
_LIVE = set()
_LIVE_LOCK = threading.Lock()


def _kill_leftovers():
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        p.kill()


atexit.register(_kill_leftovers)


# ---- small utilities --------------------------------------------------------

def free_port(kind=socket.SOCK_STREAM):
    """A port the kernel just handed out on 127.0.0.1 (bind port 0, read it back).

    There is a short window before the caller binds it; the kernel does not hand
    the same ephemeral port out again soon, so collisions are rare."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a truthy value (returned) or raise TimeoutError.
    Exceptions from pred count as "not yet"; the last one is in the message."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except ProcessExited:
            raise
        except Exception as e:  # noqa: BLE001 - "not ready yet" takes many forms
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s%s"
                               % (timeout, what, " (last error: %r)" % last if last else ""))
        time.sleep(interval)


def tcp_accepts(port, host=LOOPBACK):
    with socket.create_connection((host, port), timeout=0.5):
        return True


def short_tmpdir(prefix):
    """A short directory under /tmp for unix sockets (sun_path is 108 bytes and
    pytest's tmp_path can be longer). Removed by the owner's stop()."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def write_secret(path):
    """A fresh random HMAC secret (64 hex characters), readable by the owner only."""
    path = Path(path)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


def http_get(url, headers=None, timeout=5.0):
    """GET url; returns (status, headers (email.message.Message), body bytes).
    HTTP error statuses are returned, not raised."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def parse_cookie(set_cookie, name="stickysid"):
    """Value of cookie `name` in a Set-Cookie header value (or list of them), or None."""
    if set_cookie is None:
        return None
    values = set_cookie if isinstance(set_cookie, (list, tuple)) else [set_cookie]
    for v in values:
        c = http.cookies.SimpleCookie()
        try:
            c.load(v)
        except http.cookies.CookieError:
            continue
        if name in c:
            return c[name].value
    return None


# ---- WebSocket clients ------------------------------------------------------

class WsResult:
    """One WebSocket connection's outcome: which server took it and the cookie."""

    def __init__(self, hello, response_headers):
        self.hello = hello                          # the server's first message (dict)
        self.server = hello.get("server")           # e.g. "ws2"
        self.set_cookies = response_headers.get_all("Set-Cookie") or []
        self.set_cookie = self.set_cookies[0] if self.set_cookies else None
        self.headers = response_headers

    def cookie(self, name="stickysid"):
        return parse_cookie(self.set_cookies, name)

    def jar(self, prev=None):
        """The Cookie header a browser would send next: prev ("a=b; c=d") updated
        with this response's Set-Cookies (stickysid and HAProxy's stickysrv)."""
        return cookie_jar(prev, self.set_cookies)

    def __repr__(self):
        return "WsResult(server=%r, set_cookie=%r)" % (self.server, self.set_cookie)


def cookie_jar(prev, set_cookies):
    """A Cookie header value: prev's pairs, overwritten by set_cookies'."""
    pairs = {}
    for part in (prev or "").split(";"):
        if "=" in part:
            k, v = part.strip().split("=", 1)
            pairs[k] = v
    for name in ("stickysid", "stickysrv"):
        v = parse_cookie(set_cookies, name)
        if v is not None:
            pairs[name] = v
    return "; ".join("%s=%s" % kv for kv in pairs.items())


def _ws_headers(cookie, headers):
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = cookie if "=" in cookie else "stickysid=" + cookie
    return h


async def _ws_connect(url, cookie, headers, timeout):
    ws = await websockets.connect(url, extra_headers=_ws_headers(cookie, headers),
                                  open_timeout=timeout, close_timeout=1, ping_interval=None)
    try:
        hello = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    except BaseException:
        await ws.close()
        raise
    return ws, WsResult(hello, ws.response_headers)


def ws_open(url, cookie=None, headers=None, timeout=5.0):
    """Connect (through HAProxy), read the server's hello, close. Returns a WsResult.
    cookie: "stickysid=<v>" or just "<v>" (sent as stickysid). Raises on a failed
    handshake (websockets.InvalidStatusCode carries the HTTP status)."""
    async def go():
        ws, res = await _ws_connect(url, cookie, headers, timeout)
        await ws.close()
        return res
    return asyncio.run(go())


class WsConn:
    """A WebSocket kept open by a WsPool."""

    def __init__(self, pool, ws, result):
        self._pool = pool
        self._ws = ws
        self.result = result
        self.server = result.server
        self.set_cookie = result.set_cookie

    def cookie(self, name="stickysid"):
        return self.result.cookie(name)

    def jar(self, prev=None):
        return self.result.jar(prev)

    def echo(self, text, timeout=5.0):
        """Send text and return the server's echo (proves the tunnel is alive)."""
        async def go():
            await self._ws.send(text)
            return await asyncio.wait_for(self._ws.recv(), timeout)
        return self._pool._run(go())

    def close(self):
        self._pool.close(self)

    @property
    def closed(self):
        return self._ws.closed


class WsPool:
    """Holds many WebSocket connections open at once, from a background event loop,
    while the test does other things (count checks, kills, drains).

        with WsPool() as pool:
            c = pool.open(url, cookie=sid)
            ... c.server, c.echo("x"), pool.close(c) ...
    """

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="ws-pool")
        self._thread.start()
        self._conns = []

    def _run(self, coro, timeout=30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def open(self, url, cookie=None, headers=None, timeout=5.0):
        ws, res = self._run(_ws_connect(url, cookie, headers, timeout))
        c = WsConn(self, ws, res)
        self._conns.append(c)
        return c

    def open_many(self, url, n, cookie=None, timeout=10.0):
        """n connections opened concurrently; returns the list of WsConn."""
        async def go():
            return await asyncio.gather(*[_ws_connect(url, cookie, None, timeout)
                                          for _ in range(n)])
        out = []
        for ws, res in self._run(go(), timeout=timeout + 5):
            c = WsConn(self, ws, res)
            self._conns.append(c)
            out.append(c)
        return out

    def close(self, conn):
        if conn in self._conns:
            self._conns.remove(conn)
        try:
            self._run(conn._ws.close(), timeout=5)
        except (concurrent.futures.TimeoutError, OSError):
            pass

    def close_all(self):
        for c in list(self._conns):
            self.close(c)

    def shutdown(self):
        try:
            self.close_all()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


# ---- WebSocket over HTTP/2 (RFC 8441), hand-rolled -----------------------------
#
# No HTTP/2 library ships with Debian's python3 here, and an extended CONNECT is
# the one h2 exchange the tests need: preface + SETTINGS, one HEADERS frame with
# literal HPACK fields, then WebSocket frames inside DATA frames. HAProxy's HPACK
# encoder never uses Huffman coding, so the decoder below refuses it.

_HPACK_STATIC = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"), (":status", "200"),
    (":status", "204"), (":status", "206"), (":status", "304"), (":status", "400"),
    (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""), ("cookie", ""),
    ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""),
    ("max-forwards", ""), ("proxy-authenticate", ""), ("proxy-authorization", ""),
    ("range", ""), ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
]
_H2_DATA, _H2_HEADERS, _H2_RST, _H2_SETTINGS, _H2_GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
_H2_CONTINUATION = 0x9
_H2_ENABLE_CONNECT_PROTOCOL = 0x8


def _hpack_int_encode(v, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if v < limit:
        return bytes([first | v])
    out = bytearray([first | limit])
    v -= limit
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def _hpack_int_decode(buf, pos, prefix_bits):
    limit = (1 << prefix_bits) - 1
    v = buf[pos] & limit
    pos += 1
    if v < limit:
        return v, pos
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v += (b & 127) << shift
        shift += 7
        if not b & 128:
            return v, pos


def _hpack_str_decode(buf, pos):
    if buf[pos] & 0x80:
        raise ValueError("HPACK Huffman string: not expected from HAProxy")
    n, pos = _hpack_int_decode(buf, pos, 7)
    return bytes(buf[pos:pos + n]).decode("latin-1"), pos + n


def _hpack_encode(headers):
    """Literal header fields without indexing, new names (0x00 form)."""
    out = bytearray()
    for name, value in headers:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _hpack_int_encode(len(n), 7) + n + _hpack_int_encode(len(v), 7) + v
    return bytes(out)


def _hpack_decode(block, dyn):
    """Header block -> list of (name, value); dyn is the connection's dynamic table."""
    def entry(i):
        if i <= len(_HPACK_STATIC):
            return _HPACK_STATIC[i - 1]
        return dyn[i - len(_HPACK_STATIC) - 1]
    out, pos = [], 0
    while pos < len(block):
        b = block[pos]
        if b & 0x80:                                    # indexed field
            i, pos = _hpack_int_decode(block, pos, 7)
            out.append(entry(i))
            continue
        if b & 0xE0 == 0x20:                            # dynamic table size update
            _, pos = _hpack_int_decode(block, pos, 5)
            continue
        incremental = b & 0xC0 == 0x40
        i, pos = _hpack_int_decode(block, pos, 6 if incremental else 4)
        if i:
            name = entry(i)[0]
        else:
            name, pos = _hpack_str_decode(block, pos)
        value, pos = _hpack_str_decode(block, pos)
        if incremental:
            dyn.insert(0, (name, value))
        out.append((name, value))
    return out


class H2WsResult:
    """An HTTP/2 WebSocket attempt: response status and headers, and the hello."""

    def __init__(self, status, headers, hello):
        self.status = status
        self.headers = headers                          # list of (name, value)
        self.hello = hello
        self.server = hello.get("server") if hello else None
        self.set_cookies = [v for n, v in headers if n == "set-cookie"]
        self.set_cookie = self.set_cookies[0] if self.set_cookies else None

    def cookie(self, name="stickysid"):
        return parse_cookie(self.set_cookies, name)

    def __repr__(self):
        return "H2WsResult(status=%r, server=%r, set_cookie=%r)" % (
            self.status, self.server, self.set_cookie)


def h2_ws_open(port, path="/", cookie=None, host=LOOPBACK, timeout=5.0):
    """A WebSocket over cleartext HTTP/2 (prior knowledge, RFC 8441 extended
    CONNECT) through HAProxy: returns an H2WsResult with the server's hello.
    Raises if the peer does not offer SETTINGS_ENABLE_CONNECT_PROTOCOL."""
    def frame(ftype, flags, stream, payload=b""):
        return (len(payload).to_bytes(3, "big") + bytes([ftype, flags])
                + stream.to_bytes(4, "big") + payload)

    with socket.create_connection((host, port), timeout=timeout) as s:
        rbuf = bytearray()

        def read_frame():
            while True:
                if len(rbuf) >= 9:
                    n = int.from_bytes(rbuf[0:3], "big")
                    if len(rbuf) >= 9 + n:
                        ftype, flags = rbuf[3], rbuf[4]
                        stream = int.from_bytes(rbuf[5:9], "big") & 0x7FFFFFFF
                        payload = bytes(rbuf[9:9 + n])
                        del rbuf[:9 + n]
                        return ftype, flags, stream, payload
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("HTTP/2 peer closed the connection")
                rbuf.extend(chunk)

        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(_H2_SETTINGS, 0, 0))
        while True:                                     # the server's SETTINGS
            ftype, flags, _st, payload = read_frame()
            if ftype == _H2_SETTINGS and not flags & 0x1:
                settings = {int.from_bytes(payload[i:i + 2], "big"):
                            int.from_bytes(payload[i + 2:i + 6], "big")
                            for i in range(0, len(payload), 6)}
                break
        if settings.get(_H2_ENABLE_CONNECT_PROTOCOL) != 1:
            raise ConnectionError("peer does not offer RFC 8441 extended CONNECT")
        s.sendall(frame(_H2_SETTINGS, 0x1, 0))          # ACK
        hdrs = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                (":path", path), (":authority", "%s:%d" % (host, port)),
                ("sec-websocket-version", "13")]
        if cookie:
            hdrs.append(("cookie", cookie if "=" in cookie else "stickysid=" + cookie))
        s.sendall(frame(_H2_HEADERS, 0x4, 1, _hpack_encode(hdrs)))   # END_HEADERS

        dyn, block, resp, data = [], b"", None, bytearray()
        while True:
            ftype, flags, stream, payload = read_frame()
            if ftype == _H2_GOAWAY:
                raise ConnectionError("GOAWAY from peer: %r" % payload)
            if stream != 1:
                continue
            if ftype == _H2_RST:
                raise ConnectionError("stream reset by peer")
            if ftype in (_H2_HEADERS, _H2_CONTINUATION):
                if ftype == _H2_HEADERS and flags & 0x8:     # PADDED
                    payload = payload[1:len(payload) - payload[0]]
                if ftype == _H2_HEADERS and flags & 0x20:    # PRIORITY
                    payload = payload[5:]
                block += payload
                if flags & 0x4:
                    resp = _hpack_decode(block, dyn)
                    block = b""
                    status = int(dict(resp).get(":status", "0"))
                    if status != 200:
                        return H2WsResult(status, resp, None)
            elif ftype == _H2_DATA and resp is not None:
                data += payload
                # One unmasked WebSocket text frame from the server: the hello.
                if len(data) >= 2:
                    n, off = data[1] & 0x7F, 2
                    if n == 126:
                        n, off = int.from_bytes(data[2:4], "big"), 4
                    if len(data) >= off + n:
                        hello = json.loads(bytes(data[off:off + n]))
                        s.sendall(frame(_H2_RST, 0, 1, (0).to_bytes(4, "big")))
                        return H2WsResult(200, resp, hello)


# ---- processes --------------------------------------------------------------

class Proc:
    """One child process with its own log file. Started in its own session so
    stop() can signal its whole process group (only what we started)."""

    def __init__(self, name, workdir, argv=None):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / (name + ".log")
        self.argv = argv
        self.popen = None
        self.stopped_popens = []   # earlier incarnations (reloads, restarts)

    # subclasses override
    def ready(self):
        return True

    def start(self, timeout=10.0):
        assert self.popen is None or self.popen.poll() is not None, "%s already running" % self
        with open(self.log_path, "ab") as log:
            log.write(("---- start %s: %s\n" % (time.strftime("%H:%M:%S"),
                                                " ".join(map(str, self.argv)))).encode())
            log.flush()
            self.popen = subprocess.Popen([str(a) for a in self.argv], cwd=str(self.workdir),
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(self)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=10.0):
        def ok():
            if self.popen.poll() is not None:
                raise ProcessExited("%s exited with status %s during start-up:\n%s"
                                    % (self.name, self.popen.returncode, self.log_tail(40)))
            return self.ready()
        try:
            wait_until(ok, timeout, what="%s to be ready" % self.name)
        except ProcessExited:
            raise
        except TimeoutError as e:
            raise TimeoutError("%s\n%s log:\n%s" % (e, self.name, self.log_tail(40))) from None

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    @property
    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        if self.alive:
            os.kill(self.popen.pid, sig)

    def _reap(self, popen, sig, timeout):
        if popen.poll() is None:
            try:
                os.killpg(popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                popen.wait(5)

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout. Idempotent."""
        for p in self.stopped_popens:
            self._reap(p, signal.SIGTERM, timeout)
        if self.popen is not None:
            self._reap(self.popen, signal.SIGTERM, timeout)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def kill(self):
        """SIGKILL at once (a crash, as far as peers can tell)."""
        for p in self.stopped_popens + ([self.popen] if self.popen else []):
            self._reap(p, signal.SIGKILL, 5)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=200):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __repr__(self):
        return "<%s %s pid=%s>" % (type(self).__name__, self.name, self.pid)


class ProcessExited(RuntimeError):
    pass


class Redis(Proc):
    """An ephemeral redis-server (no RDB, no AOF) on a fixed loopback port, so a
    restart() or a kill()+start() brings it back where clients expect it."""

    def __init__(self, workdir, name="redis", port=None):
        super().__init__(name, workdir)
        self.port = port or free_port()
        self.data_dir = self.workdir / (name + "-data")
        self.data_dir.mkdir(exist_ok=True)
        self.argv = [REDIS_SERVER, "--port", self.port, "--bind", LOOPBACK,
                     "--save", "", "--appendonly", "no", "--dir", self.data_dir,
                     "--logfile", "", "--daemonize", "no", "--protected-mode", "yes",
                     # DEBUG SLEEP stalls it for real in the overload tests (loopback only)
                     "--enable-debug-command", "local"]

    def ready(self):
        return self.client().ping()

    def client(self, **kw):
        import redis  # python3-redis; imported late so harness users without it still work
        kw.setdefault("decode_responses", True)
        kw.setdefault("socket_timeout", 5)
        return redis.Redis(host=LOOPBACK, port=self.port, **kw)


def free_cluster_port(bus_offset=10000):
    """A free loopback port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as a:
            a.bind((LOOPBACK, 0))
            port = a.getsockname()[1]
            if port + bus_offset > 65535:
                continue
            try:
                with socket.socket() as b:
                    b.bind((LOOPBACK, port + bus_offset))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """A real Redis Cluster on loopback: `masters` redis-server nodes started with
    --cluster-enabled and joined by `redis-cli --cluster create`, each with
    `replicas` replicas (3 + 3 by default). cluster-node-timeout is short so that
    a killed master is failed over within a few seconds. nodes: the Redis procs
    (their .port); seeds: "127.0.0.1:p ..." for the agent's redis.nodes."""

    def __init__(self, procs, masters=3, replicas=1, node_timeout_ms=1000, name="rc"):
        self.procs = procs
        self.nodes = []
        for i in range(masters * (1 + replicas)):
            n = procs.add(Redis(procs.workdir, "%s-%d" % (name, i), free_cluster_port()))
            n.argv += ["--cluster-enabled", "yes",
                       "--cluster-config-file", n.data_dir / ("nodes-%d.conf" % i),
                       "--cluster-node-timeout", str(node_timeout_ms),
                       # a failover in the tests must not wait for data-age checks
                       "--cluster-replica-validity-factor", "0"]
            self.nodes.append(n.start())
        out = subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + ["%s:%d" % (LOOPBACK, n.port) for n in self.nodes]
            + ["--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed:\n%s%s"
                               % (out.stdout, out.stderr))
        self.wait_ok()

    @property
    def seeds(self):
        return " ".join("%s:%d" % (LOOPBACK, n.port) for n in self.nodes)

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def cluster_nodes(self, via=None):
        """CLUSTER NODES as dicts: port, id, master (bool), failed, master_id, slots."""
        out = []
        for n in ([via] if via else [x for x in self.nodes if x.alive]):
            try:
                text = n.client().execute_command("CLUSTER", "NODES")
            except Exception:  # noqa: BLE001 - a node going down: ask another
                continue
            if isinstance(text, bytes):
                text = text.decode()
            for line in text.strip().splitlines():
                f = line.split()
                out.append({"id": f[0], "port": int(f[1].split("@")[0].rsplit(":", 1)[1]),
                            "master": "master" in f[2], "failed": "fail" in f[2],
                            "master_id": f[3], "slots": f[8:]})
            return out
        return out

    def masters(self):
        """The master nodes (procs) now serving slots, as the cluster says."""
        ports = {x["port"] for x in self.cluster_nodes()
                 if x["master"] and not x["failed"] and x["slots"]}
        return [n for n in self.nodes if n.port in ports and n.alive]

    def replica_of(self, master):
        info = self.cluster_nodes()
        mid = next(x["id"] for x in info if x["port"] == master.port)
        ports = [x["port"] for x in info if x["master_id"] == mid and not x["failed"]]
        return self.node(ports[0])

    def wait_ok(self, timeout=30.0):
        """Every live node says cluster_state:ok and sees every slot served."""
        def ok():
            for n in self.nodes:
                if not n.alive:
                    continue
                info = n.client().execute_command("CLUSTER", "INFO")
                if isinstance(info, bytes):
                    info = info.decode()
                if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                    return False
            return True
        wait_until(ok, timeout=timeout, what="the Redis Cluster to be ok")

    def client(self):
        """A client that follows MOVED/ASK (Debian's python3-redis 4.3 RedisCluster
        cannot re-read the map once a node is gone, so the tests use this one)."""
        return ClusterClient(self)

    def used_cpu(self):
        """used_cpu_sys + used_cpu_user of every live master, summed (seconds)."""
        total = 0.0
        for n in self.masters():
            info = n.client().info("cpu")
            total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return total


class ClusterClient:
    """Any redis.Redis method, sent to a live master and re-sent where MOVED/ASK
    say (key commands only: a keyless one answers from whichever master)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.port = None

    def __getattr__(self, name):
        import redis

        def call(*args, **kw):
            port = self.port
            ask = False
            for _ in range(10):
                if port is None:
                    port = self.cluster.masters()[0].port
                cl = redis.Redis(host=LOOPBACK, port=port, decode_responses=True,
                                 socket_timeout=5)
                try:
                    if ask:
                        cl.execute_command("ASKING")
                    out = getattr(cl, name)(*args, **kw)
                    self.port = port
                    return out
                except redis.exceptions.ResponseError as e:
                    word, _, rest = str(e).partition(" ")
                    if word not in ("MOVED", "ASK"):
                        raise
                    port, ask = int(rest.rsplit(":", 1)[1]), word == "ASK"
                except redis.exceptions.ConnectionError:
                    port = None  # that node is gone: ask the cluster again
                    time.sleep(0.1)
                finally:
                    cl.close()
            raise RuntimeError("%s: too many redirects" % name)
        return call


class Stickyd(Proc):
    """agent/stickyd with a generated JSON config (see agent/config.c for the keys).

    listen_port, syslog ports and the secret file are chosen here; `config` is the
    dict written to <workdir>/<name>.json; update_config() + reload() exercise SIGHUP.
    backends: {"be_ws": ["ws1", "ws2"]} or {"be_ws": {"ws1": 1, "ws2": 0}} (weights)
    gives the static server list (used when stats_socket is None)."""

    def __init__(self, workdir, name="stickyd", redis_port=6379, stats_socket=None,
                 backends=None, instance=None, secret_file=None, syslog_udp=True,
                 syslog_tcp=False, listen_port=None, log_level="info", extra=None, wrap=None):
        super().__init__(name, workdir)
        self.port = listen_port or free_port()
        self.syslog_udp_port = free_port(socket.SOCK_DGRAM) if syslog_udp else None
        self.syslog_tcp_port = free_port() if syslog_tcp else None
        if secret_file is None:
            secret_file = self.workdir / "secret.key"
            if not secret_file.exists():
                write_secret(secret_file)
        self.secret_file = Path(secret_file)
        cfg = {
            "listen": "%s:%d" % (LOOPBACK, self.port),
            "log_level": log_level,
            "redis": {"host": LOOPBACK, "port": redis_port, "timeout": "200ms",
                      "reconnect_min": "50ms", "reconnect_max": "500ms"},
            "session": {"secret_file": str(self.secret_file)},
            "haproxy": {"stats_socket": ("unix:" + str(stats_socket)) if stats_socket else None,
                        "refresh": "200ms", "resync": "1s"},
            "syslog": {
                "udp": "%s:%d" % (LOOPBACK, self.syslog_udp_port) if syslog_udp else None,
                "tcp": "%s:%d" % (LOOPBACK, self.syslog_tcp_port) if syslog_tcp else None,
            },
        }
        if instance:
            cfg["instance"] = instance
        if backends:
            cfg["backends"] = {}
            for be, srvs in backends.items():
                if not isinstance(srvs, dict):
                    srvs = {s: 1 for s in srvs}
                cfg["backends"][be] = {"servers": {s: {"weight": w} for s, w in srvs.items()}}
        for k, v in (extra or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        self.config = cfg
        self.config_path = self.workdir / (name + ".json")
        self._write_config()
        # wrap: a command prefix (prlimit, faketime) the agent runs under
        self.argv = list(wrap or []) + [STICKYD, "--config", self.config_path]

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)

    @property
    def syslog_udp_addr(self):
        return "%s:%d" % (LOOPBACK, self.syslog_udp_port) if self.syslog_udp_port else None

    @property
    def syslog_tcp_addr(self):
        return "%s:%d" % (LOOPBACK, self.syslog_tcp_port) if self.syslog_tcp_port else None

    def _write_config(self):
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.config, indent=2) + "\n")
        os.replace(tmp, self.config_path)

    def update_config(self, **changes):
        """Merge changes (one level deep for sections) into the config file."""
        for k, v in changes.items():
            if isinstance(v, dict) and isinstance(self.config.get(k), dict):
                self.config[k].update(v)
            else:
                self.config[k] = v
        self._write_config()

    def reload(self):
        self.signal(signal.SIGHUP)

    def start(self, timeout=10.0):
        if not STICKYD.exists():
            raise FileNotFoundError("%s is not built (run make)" % STICKYD)
        return super().start(timeout)

    def ready(self):
        return tcp_accepts(self.port)


class WsServer(Proc):
    """tests/integration/wsserver.py: a named WebSocket echo server. Port 0 by
    default; the real port is read back from its port file, so there is no race."""

    def __init__(self, workdir, name, port=0):
        super().__init__(name, workdir)
        self.requested_port = port
        self.port = port or None
        self.port_file = self.workdir / (name + ".port")
        self.argv = [PYTHON, WSSERVER, "--name", name, "--port", port,
                     "--port-file", self.port_file]

    def start(self, timeout=10.0):
        if self.port_file.exists():
            self.port_file.unlink()
        if self.port:  # a restart keeps the port HAProxy's config names
            self.argv[self.argv.index("--port") + 1] = self.port
        return super().start(timeout)

    def ready(self):
        if not self.port_file.exists():
            return False
        self.port = int(self.port_file.read_text())
        return tcp_accepts(self.port)

    @property
    def addr(self):
        return "%s:%d" % (LOOPBACK, self.port)


class Haproxy(Proc):
    """/usr/sbin/haproxy in the foreground (-db), from a rendered or literal config.

        h = Haproxy(workdir)                # h.stats_socket is known now
        h.render(spec)  or  h.write_cfg(text)
        h.start(); h.reload(); h.stop()
        h.show_stat(); h.server_status("be_ws", "ws1"); h.wait_server_status(...)
    """

    def __init__(self, workdir, name="haproxy"):
        super().__init__(name, workdir)
        self.sock_dir = short_tmpdir("sd-%s-" % name)
        self.stats_socket = os.path.join(self.sock_dir, "admin.sock")
        self.conf_dir = self.workdir / (name + "-conf")
        self.conf_dir.mkdir(exist_ok=True)
        self.cfg_path = self.conf_dir / "haproxy.cfg"
        self.spec = None
        self.port = None            # the frontend port, when known
        self.argv = [HAPROXY, "-db", "-f", self.cfg_path]

    def render(self, spec):
        """Render scripts/render-haproxy.py with spec (a dict of its keys; the stats
        socket defaults to ours) into the conf dir; raises with HAProxy's output."""
        spec = dict(spec)
        spec.setdefault("stats_socket", self.stats_socket)
        self.stats_socket = spec["stats_socket"]
        spec_path = self.conf_dir / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=2) + "\n")
        p = subprocess.run([PYTHON, RENDER, "--spec", spec_path, "--out", self.conf_dir,
                            "--haproxy", HAPROXY], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("render-haproxy failed:\n" + p.stdout.decode(errors="replace"))
        self.spec = spec
        bind = spec.get("bind")
        if isinstance(bind, list):
            bind = bind[0]
        if bind:
            self.port = int(bind.rsplit(":", 1)[1])
        return self.cfg_path

    def add_after_use_server(self, lines):
        """Insert test-only lines (e.g. response headers that show the agent's answer)
        right after the rendered `use-server %[var(txn.sticky.server)]` rule."""
        text = self.cfg_path.read_text()
        anchor = "    use-server %[var(txn.sticky.server)]"
        assert anchor in text, "the reference config changed: no use-server rule to follow"
        at = text.index("\n", text.index(anchor)) + 1
        return self.write_cfg(text[:at] + lines + text[at:], port=self.port)

    def write_cfg(self, text, port=None):
        """Use a literal config (it should declare `stats socket {self.stats_socket}`)."""
        self.cfg_path.write_text(text)
        self.port = port
        p = subprocess.run([HAPROXY, "-c", "-f", self.cfg_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("haproxy -c failed:\n" + p.stdout.decode(errors="replace"))
        return self.cfg_path

    @property
    def url(self):
        return "http://%s:%d" % (LOOPBACK, self.port)

    @property
    def ws_url(self):
        return "ws://%s:%d" % (LOOPBACK, self.port)

    def ready(self):
        if "Name: HAProxy" not in self.cmd("show info"):
            return False
        return self.port is None or tcp_accepts(self.port)

    def reload(self, timeout=10.0):
        """Start a new process that takes the listeners over (-x) and tells the old
        one to finish its connections (-sf). The old one is reaped at stop().
        Returns once the NEW process answers on the stats socket: the socket's
        listener is handed over like the others, so for a moment the old process
        may still accept there (and "ready" alone could be its answer)."""
        old = self.popen
        self.argv = [HAPROXY, "-db", "-f", self.cfg_path, "-x", self.stats_socket,
                     "-sf", old.pid]
        self.stopped_popens.append(old)
        self.popen = None
        try:
            self.start(timeout)
        finally:
            self.argv = [HAPROXY, "-db", "-f", self.cfg_path]
        wait_until(lambda: "Pid: %d\n" % self.pid in self.cmd("show info"), timeout,
                   what="the reloaded %s (pid %d) on its stats socket" % (self.name, self.pid))
        return self

    def stop(self, timeout=5.0):
        super().stop(timeout)
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    def kill(self):
        super().kill()
        shutil.rmtree(self.sock_dir, ignore_errors=True)

    def cmd(self, command, timeout=5.0):
        """One runtime-API command over the stats socket; returns the text answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.stats_socket)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks).decode(errors="replace")

    def show_stat(self):
        """`show stat` as a list of dicts (pxname, svname, status, scur, ...)."""
        lines = [l for l in self.cmd("show stat").splitlines() if l.strip()]
        header = lines[0].lstrip("# ").split(",")
        return [dict(zip(header, l.split(","))) for l in lines[1:]]

    def scur(self, backend):
        """HAProxy's current sessions per server of backend, zeros included."""
        return {row["svname"]: int(row["scur"] or 0) for row in self.show_stat()
                if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")}

    def server_status(self, backend, server):
        for row in self.show_stat():
            if row["pxname"] == backend and row["svname"] == server:
                return row["status"]
        raise KeyError("%s/%s not in show stat" % (backend, server))

    def wait_server_status(self, backend, server, want, timeout=15.0, exact=True):
        """Wait until the server's `show stat` status is want ("UP", "DOWN", "MAINT",
        "DRAIN", "no check"); exact=False also accepts transitions such as "UP 1/2"
        (UP, one failed check). Returns the status seen."""
        def ok():
            st = self.server_status(backend, server)
            return st if (st == want or (not exact and st.startswith(want))) else None
        return wait_until(ok, timeout, interval=0.1,
                          what="%s/%s to be %s" % (backend, server, want))


# ---- the agent's Redis keys, as the tests read and set them ---------------------

def rkey(suffix, backend="be_ws", prefix="sticky:"):
    """The key `<prefix>{<backend>}:<suffix>` (conns, i:<inst>, state, s:<sid>, ...)."""
    return "%s{%s}:%s" % (prefix, backend, suffix)


def hash_ints(r, key):
    """A counts hash (conns, i:<inst>, ...) as {server: int}, zeros included."""
    return {k: int(v) for k, v in r.hgetall(key).items()}


def record_id(sid):
    """The record id a session cookie names (agent/sid.h): a "2" cookie's rid, a
    "1" cookie's nonce, as "2" + b64url(16 bytes); anything else as is."""
    import base64

    def dec(t):
        return base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
    if len(sid) == 56 and sid[0] == "2":
        return "2" + base64.urlsafe_b64encode(dec(sid[1:])[1:17]).decode().rstrip("=")
    if len(sid) == 44 and sid[0] == "1":
        return "2" + base64.urlsafe_b64encode(dec(sid[1:])[:16]).decode().rstrip("=")
    return sid


def record_key(sid, backend="be_ws", cluster=False, prefix="sticky:"):
    """The key of the session record a cookie (or record id) names (agent/model.h):
    `<prefix>{<backend>}:s:<rid>`, or in a Redis Cluster `<prefix><backend>:s:{<rid>}`
    (each record in its own slot)."""
    if cluster:
        return "%s%s:s:{%s}" % (prefix, backend, record_id(sid))
    return rkey("s:" + record_id(sid), backend, prefix)


def session_record(r, sid, backend="be_ws", cluster=False):
    """The session record a cookie (or record id) names, as a dict with server,
    created, seen (ints), moved (bool), inst; {} when there is none. Format:
    agent/model.h, "<server> <created> <seen> <-|m> <inst>"."""
    v = r.get(record_key(sid, backend, cluster))
    if v is None:
        return {}
    server, created, seen, flag, *inst = v.split(" ", 4)
    return {"server": server, "created": int(created), "seen": int(seen), "moved": flag == "m",
            "inst": inst[0] if inst else ""}


def record_is(r, sid, server, backend="be_ws", timeout=3.0, cluster=False):
    """True once the session's record names server (records are written by the
    agent's batched writer, a few ms after the answer); False if it never does."""
    try:
        wait_record(r, sid, backend, server=server, timeout=timeout, cluster=cluster)
        return True
    except TimeoutError:
        return False


def wait_record(r, sid, backend="be_ws", server=None, timeout=5.0, cluster=False):
    """The record once the agent's batched write has landed (and names server)."""
    def ready():
        rec = session_record(r, sid, backend, cluster)
        return rec if rec and (server is None or rec["server"] == server) else None
    return wait_until(ready, timeout=timeout, what="session record of %s" % sid[:12])


def wait_fleet_ready(r, lbs, servers, backend="be_ws", timeout=15.0):
    """Every HAProxy of lbs sees its agent and every one of servers UP, and every
    agent has its servers view from HAProxy and a live heartbeat in Redis (it wrote
    :servers and :insts). r is a Redis client, or a callable returning one (the
    current master, behind Sentinel)."""
    client = (lambda: r) if hasattr(r, "hkeys") else r
    names = {w.name for w in servers}
    for lb in lbs:
        lb.wait_up(servers, backend, timeout)
    wait_until(lambda: names <= set(client().hkeys(rkey("servers", backend)))
               and {lb.name for lb in lbs} <= set(client().zrange(rkey("insts", backend), 0, -1)),
               timeout, what="agents to publish their servers and heartbeat")


def set_server_state(r, server, value, backend="be_ws"):
    """Set a server's admin state ("drain:<ms>", "maint", ...; None removes it)
    straight in Redis: unlike stickyctl, this publishes no change event."""
    if value is None:
        r.hdel(rkey("state", backend), server)
    else:
        r.hset(rkey("state", backend), server, value)


def agent_stats(agent, timeout=5.0):
    """The agent's counters as {name: int}, from the "stats: <name> <value>" lines
    SIGUSR1 makes it write to its log (only lines written after the signal count)."""
    mark = len(agent.log_text())
    agent.signal(signal.SIGUSR1)

    def parsed():
        text = agent.log_text()[mark:]
        if "stats: events_received" not in text:  # the last counter: the dump is whole
            return None
        out = {}
        for line in text.splitlines():
            parts = line.split("stats: ", 1)
            if len(parts) == 2 and len(parts[1].split()) == 2:
                k, v = parts[1].split()
                if v.isdigit():
                    out[k] = int(v)
        return out
    return wait_until(parsed, timeout=timeout, what="SIGUSR1 stats")


class ProcGroup:
    """Everything one test started; stop_all() in reverse start order. The
    factories register the object; start() is left to the caller unless noted."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.procs = []

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def redis(self, name="redis", port=None, start=True):
        r = self.add(Redis(self.workdir, name, port))
        return r.start() if start else r

    def redis_cluster(self, **kw):
        """A started RedisCluster (3 masters + 3 replicas by default)."""
        return RedisCluster(self, **kw)

    def stickyd(self, name="stickyd", start=True, **kw):
        s = self.add(Stickyd(self.workdir, name, **kw))
        return s.start() if start else s

    def haproxy(self, name="haproxy"):
        return self.add(Haproxy(self.workdir, name))

    def ws_server(self, name, port=0, start=True):
        w = self.add(WsServer(self.workdir, name, port))
        return w.start() if start else w

    def ws_servers(self, n=3, prefix="ws"):
        return [self.ws_server("%s%d" % (prefix, i)) for i in range(1, n + 1)]

    def stack(self, **kw):
        return Stack(self, **kw)

    def logs(self):
        """(name, text) for every process log, for failure reports."""
        return [(p.name, p.log_tail(300)) for p in self.procs]

    def stop_all(self):
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                errors.append("%s: %r" % (p.name, e))
        if errors:
            raise RuntimeError("could not stop: " + "; ".join(errors))


# Short agent periods (haproxy section of the agent's config), so counts and views
# settle within a second or two.
FAST_PERIODS = {"refresh": "200ms", "resync": "500ms", "heartbeat_ttl": "2s"}


def lb_spec(name, servers, agent, syslog, backend="be_ws", **overrides):
    """The render-haproxy spec of one test load balancer: a free loopback port,
    `servers` (WsServers, equal weights) in `backend`, `agent` (a Stickyd), the
    given syslog member, a cookie without Secure (no TLS here), checks every 500 ms.
    overrides replace or add top-level keys."""
    spec = {
        "bind": "%s:%d" % (LOOPBACK, free_port()),
        "instance": name,
        "backends": [{"name": backend, "servers": [
            {"name": w.name, "addr": w.addr, "weight": 100} for w in servers]}],
        "agents": [agent.addr],
        "syslog": syslog,
        "cookie": {"name": "stickysid", "secure": False},
        # HAProxy's own fallback cookie carries the servers' tags (agent down)
        "fallback_cookie": {"name": "stickysrv", "secret_file": str(agent.secret_file)},
        # The agent answers within redis.timeout; the SPOE budget is only the
        # ceiling HAProxy waits for a dead or stuck agent.
        "processing_timeout": "500ms",
        "check_inter": "500ms",
        "agent_check_inter": "500ms",
    }
    spec.update(overrides)
    return spec


class Lb:
    """One load balancer: an HAProxy and its stickyd (tests' cluster builders
    subclass it to keep more per instance)."""

    def __init__(self, name, haproxy, stickyd):
        self.name, self.haproxy, self.stickyd = name, haproxy, stickyd

    @property
    def ws_url(self):
        return self.haproxy.ws_url + "/"

    @property
    def url(self):
        return self.haproxy.url + "/"

    def stats(self):
        """The agent's counters (see agent_stats)."""
        return agent_stats(self.stickyd)

    def wait_up(self, servers, backend="be_ws", timeout=15.0):
        """Wait until this HAProxy sees its agent and every one of servers UP."""
        self.haproxy.wait_server_status("stickyd_agents", "agent1", "UP", timeout)
        for w in servers:
            self.haproxy.wait_server_status(backend, w.name, "UP", timeout)


class Stack:
    """The whole picture, ready to use: one Redis, `servers` WebSocket servers in
    backend `backend`, and `instances` load balancers, each an HAProxy rendered by
    scripts/render-haproxy.py with its own stickyd (instance names lb1, lb2, ...;
    shared Redis and session secret).

        st = procs.stack(instances=2)
        st.lbs[0].haproxy.ws_url, st.lbs[0].stickyd, st.redis, st.ws (WsServers)

    runtime_api=True points each agent at its HAProxy's stats socket; False gives
    it the static server list instead. Extra keys: spec (render overrides),
    stickyd (Stickyd keyword arguments)."""

    Lb = Lb

    def __init__(self, group, instances=1, servers=3, backend="be_ws", socketio=False,
                 runtime_api=True, syslog="udp", spec=None, stickyd=None):
        self.group = group
        self.backend = backend
        self.redis = group.redis()
        self.ws = group.ws_servers(servers)
        self.secret_file = write_secret(group.workdir / "shared-secret.key")
        self.lbs = []
        for i in range(1, instances + 1):
            name = "lb%d" % i
            h = group.haproxy("haproxy-" + name)
            kw = dict(redis_port=self.redis.port, instance=name,
                      secret_file=self.secret_file,
                      stats_socket=h.stats_socket if runtime_api else None,
                      backends=None if runtime_api else {backend: [w.name for w in self.ws]},
                      syslog_udp=(syslog == "udp"), syslog_tcp=(syslog == "tcp"))
            kw.update(stickyd or {})
            s = group.stickyd("stickyd-" + name, start=False, **kw)
            rspec = lb_spec(name, self.ws, s, backend=backend, socketio=socketio,
                            syslog=({"transport": "udp", "addr": s.syslog_udp_addr}
                                    if syslog == "udp"
                                    else {"transport": "tcp", "addr": s.syslog_tcp_addr}
                                    if syslog == "tcp" else {"transport": "none"}),
                            **(spec or {}))
            h.render(rspec)
            s.start()
            h.start()
            self.lbs.append(Stack.Lb(name, h, s))

    def wait_agents_up(self, timeout=15.0):
        for lb in self.lbs:
            lb.haproxy.wait_server_status("stickyd_agents", "agent1", "UP", timeout)

    def wait_servers_up(self, timeout=15.0):
        for lb in self.lbs:
            for w in self.ws:
                lb.haproxy.wait_server_status(self.backend, w.name, "UP", timeout)
