"""agent/stickyctl against a real redis-server (and a real agent/stickyd).

Keys are seeded as the agents write them (agent/fleet.h: servers, conns,
i:<inst>, insts, state; agent/assign.c: s:<sid>), then every command is run as
a subprocess and checked on its stdout, stderr and exit code. `stickyctl watch`
runs as a subprocess too, so the events the CLI publishes are checked by
decoding them with the project's own decoder, as an operator would see them.
The last tests drive a real agent over SPOP to show that what stickyctl writes
is what the agents obey.
"""
import base64
import hashlib
import hmac
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
from harness import wait_until

STICKYCTL = Path(os.environ.get("STICKYCTL", harness.REPO / "agent" / "stickyctl"))
PREFIX = "sticky:"
BE = "be_ws"
CHANNEL = PREFIX + "events"


@pytest.fixture(scope="module", autouse=True)
def _built():
    if not STICKYCTL.exists():
        pytest.fail("%s is not built: run `make agent/stickyctl` first" % STICKYCTL)


def ctl(redis, *args, env=None, timeout=20, addr=None):
    """Run stickyctl against `redis` (a harness.Redis, or None with addr)."""
    argv = [str(STICKYCTL)]
    if addr is not None:
        argv += ["--redis", addr]
    elif redis is not None:
        argv += ["--redis", "127.0.0.1:%d" % redis.port]
    argv += [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.pop("STICKYD_REDIS_PASSWORD", None)
    full_env.pop("STICKYD_REDIS_USER", None)
    full_env.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env,
                          stdin=subprocess.DEVNULL)


def assert_error(p, code, *needles):
    """Exit code, one stderr line starting with "stickyctl: ", containing needles."""
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("stickyctl: "), p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def now_ms():
    return int(time.time() * 1000)


def k(suffix, backend=BE, prefix=PREFIX):
    return harness.rkey(suffix, backend, prefix)


def seed(r, prefix=PREFIX):
    """Two backends as two agents (web1, web2) would leave them, plus a dead
    instance (ghost) whose heartbeat is older than the default 15 s TTL."""
    now = now_ms()
    p = r.pipeline()
    p.hset(k("servers", prefix=prefix), mapping={"ws1": "1 ready", "ws2": "2 ready",
                                                 "ws10": "1 down", "ws3": "1 drain"})
    p.hset(k("conns", prefix=prefix), mapping={"ws1": 5, "ws2": 2})
    p.hset(k("i:web1", prefix=prefix), mapping={"ws1": 3, "ws2": 2})
    p.hset(k("i:web2", prefix=prefix), mapping={"ws1": 2})
    p.zadd(k("insts", prefix=prefix), {"web1": now, "web2": now - 1000, "ghost": now - 600000})
    p.hset(k("state", prefix=prefix), mapping={"ws2": "drain:%d:close" % (now + 250000),
                                               "ws3": "maint"})
    p.hset(k("servers", "be_api", prefix=prefix), mapping={"api1": "1 ready"})
    p.execute()
    return now


def seed_session(r, sid="1sessionAAA", server="ws1", ttl_ms=3600000):
    """A session record as the agents write it (agent/model.h)."""
    created = now_ms() - 120000
    r.set(k("s:" + sid), "%s %d %d - web2" % (server, created, created + 60000), px=ttl_ms)
    return created


def table_rows(text, backend):
    """{server: [cells]} of one backend's table (cells split on 2+ spaces)."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("backend %s:" % backend))
    header = re.split(r"\s{2,}", lines[start + 1].strip())
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith("(") or line.startswith("backend "):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = dict(zip(header, cells))
    return lines[start], header, rows, [l for l in lines[start + 2:] if l.startswith("(")]


class Watcher:
    """`stickyctl watch` as a subprocess; lines collected by a reader thread."""

    def __init__(self, redis, *args, channel=CHANNEL, options=None):
        """options: global options (default: --redis of `redis`)."""
        if options is None:
            options = ["--redis", "127.0.0.1:%d" % redis.port]
        argv = [str(STICKYCTL)] + [str(o) for o in options] + ["watch"] + list(args)
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, stdin=subprocess.DEVNULL, start_new_session=True)
        self.out, self.err = queue.Queue(), queue.Queue()
        self.lines, self.errs = [], []
        for stream, q in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()
        client = redis.client()
        # subscribed once Redis counts it: only then is a publish sure to reach it
        wait_until(lambda: dict(client.pubsub_numsub(channel)).get(channel, 0) >= 1,
                   timeout=10, what="stickyctl watch subscribed to %s" % channel)

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line.rstrip("\n"))

    def next_line(self, timeout=10, stderr=False):
        q, keep = (self.err, self.errs) if stderr else (self.out, self.lines)
        line = q.get(timeout=timeout)
        keep.append(line)
        return line

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise


@pytest.fixture
def watchers():
    started = []

    def start(*a, **kw):
        w = Watcher(*a, **kw)
        started.append(w)
        return w
    yield start
    for w in started:
        if w.p.poll() is None:
            w.p.kill()
            w.p.wait()


# ---- status ------------------------------------------------------------------

def test_status_table(redis_server):
    r = redis_server.client()
    seed(r)
    p = ctl(redis_server, "status")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    title, header, rows, notes = table_rows(p.stdout, BE)
    # columns: the two live instances only; natural order of servers
    assert header == ["SERVER", "STATE", "CONNS", "web1", "web2", "WEIGHT"]
    assert list(rows) == ["ws1", "ws2", "ws3", "ws10"]
    assert title == "backend be_ws: 4 servers, 7 live connections, 2 live instances"
    assert rows["ws1"] == {"SERVER": "ws1", "STATE": "ready", "CONNS": "5", "web1": "3",
                           "web2": "2", "WEIGHT": "1"}
    assert re.fullmatch(r"drain until \d\d:\d\d:\d\dZ \(in [34]m(\d+s)?\) close", rows["ws2"]["STATE"])
    assert (rows["ws2"]["CONNS"], rows["ws2"]["web1"], rows["ws2"]["web2"]) == ("2", "2", "0")
    assert rows["ws2"]["WEIGHT"] == "2"
    assert rows["ws3"]["STATE"] == "maint"
    assert rows["ws10"]["STATE"] == "down (HAProxy)"
    assert rows["ws10"]["CONNS"] == "0"
    assert len(notes) == 1 and notes[0].startswith("(instance ghost: last heartbeat 10m")
    # the other backend is listed too, and `status <backend>` narrows to one
    assert "backend be_api: 1 server, 0 live connections, 0 live instances" in p.stdout
    p1 = ctl(redis_server, "status", "be_api")
    assert p1.returncode == 0 and "be_ws" not in p1.stdout and "api1" in p1.stdout


def test_status_json_shape(redis_server):
    r = redis_server.client()
    t0 = seed(r)
    p = ctl(redis_server, "status", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["version"] == 1 and doc["prefix"] == PREFIX
    assert abs(doc["now_ms"] - now_ms()) < 60000
    assert [b["name"] for b in doc["backends"]] == ["be_api", "be_ws"]
    be = doc["backends"][1]
    assert be["total_conns"] == 7
    insts = {i["name"]: i for i in be["instances"]}
    assert insts["web1"] == {"name": "web1", "heartbeat_ms": t0, "live": True}
    assert insts["ghost"]["live"] is False and insts["ghost"]["heartbeat_ms"] == t0 - 600000
    srv = {s["name"]: s for s in be["servers"]}
    assert [s["name"] for s in be["servers"]] == ["ws1", "ws2", "ws3", "ws10"]
    keys = {"name", "state", "admin", "admin_raw", "deadline_ms", "deadline_passed",
            "close_at_deadline", "haproxy_state", "weight", "conns", "per_instance",
            "maxconn", "slowstart_ms", "ramp_since_ms", "ramp_pct"}
    for s in be["servers"]:
        assert set(s) == keys
    assert srv["ws1"] == {"name": "ws1", "state": "ready", "admin": "ready", "admin_raw": None,
                          "deadline_ms": 0, "deadline_passed": False,
                          "close_at_deadline": False, "haproxy_state": "ready", "weight": 1,
                          "conns": 5, "per_instance": {"web1": 3, "web2": 2},
                          "maxconn": None, "slowstart_ms": 0, "ramp_since_ms": None,
                          "ramp_pct": 100}
    assert srv["ws2"]["state"] == "drain" and srv["ws2"]["deadline_ms"] == t0 + 250000
    assert srv["ws2"]["close_at_deadline"] is True
    assert srv["ws2"]["admin_raw"] == "drain:%d:close" % (t0 + 250000)
    assert srv["ws3"]["state"] == "maint" and srv["ws3"]["haproxy_state"] == "drain"
    assert srv["ws10"]["state"] == "down" and srv["ws10"]["admin"] == "ready"
    assert srv["ws10"]["per_instance"] == {"web1": 0, "web2": 0}


def test_status_odd_states(redis_server):
    """A passed deadline, an unparsable state, a server only in conns."""
    r = redis_server.client()
    seed(r)
    r.hset(k("state"), "ws1", "drain:%d" % (now_ms() - 90000))
    r.hset(k("state"), "ws10", "bogus")
    r.hset(k("conns"), "ws99", 1)
    p = ctl(redis_server, "status", BE)
    assert p.returncode == 0, p.stderr
    _, _, rows, _ = table_rows(p.stdout, BE)
    assert re.fullmatch(r"drain until \d\d:\d\d:\d\dZ \(passed [12]m(\d+s)? ago\)", rows["ws1"]["STATE"])
    assert rows["ws10"]["STATE"] == "unknown (bogus)"
    assert rows["ws99"]["WEIGHT"] == "-" and rows["ws99"]["CONNS"] == "1"
    doc = json.loads(ctl(redis_server, "status", BE, "--json").stdout)
    srv = {s["name"]: s for s in doc["backends"][0]["servers"]}
    assert srv["ws1"]["deadline_passed"] is True
    assert srv["ws10"]["state"] == "unknown" and srv["ws10"]["admin_raw"] == "bogus"
    assert srv["ws99"]["weight"] is None and srv["ws99"]["haproxy_state"] is None


def test_status_unknown_backend_and_empty(redis_server):
    r = redis_server.client()
    p = ctl(redis_server, "status")
    assert p.returncode == 0 and "no backends under prefix sticky:" in p.stdout
    assert json.loads(ctl(redis_server, "status", "--json").stdout)["backends"] == []
    seed(r)
    p = ctl(redis_server, "status", "be_nope")
    assert_error(p, 3, "unknown backend 'be_nope'", "known: be_api, be_ws")
    assert p.stdout == ""


# ---- lookup -------------------------------------------------------------------

def test_lookup(redis_server):
    r = redis_server.client()
    seed(r)
    created = seed_session(r)
    p = ctl(redis_server, "lookup", BE, "1sessionAAA")
    assert p.returncode == 0, p.stderr
    fields = dict(re.split(r"\s+", l, maxsplit=1) for l in p.stdout.splitlines())
    iso = lambda ms: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + \
        ".%03dZ" % (ms % 1000)
    assert fields["backend"] == BE and fields["session"] == "1sessionAAA"
    assert fields["server"] == "ws1" and fields["record"] == "1sessionAAA"
    assert fields["instance"] == "web2"
    assert fields["created"] == iso(created) and fields["seen"] == iso(created + 60000)
    assert re.fullmatch(r"(59m\d*s?|1h)", fields["ttl"]), fields["ttl"]

    doc = json.loads(ctl(redis_server, "lookup", BE, "1sessionAAA", "--json").stdout)
    assert set(doc) == {"backend", "sid", "record", "key", "server", "created_ms", "created",
                        "seen_ms", "seen", "reconnects", "moved", "inst", "ttl_ms"}
    assert doc["sid"] == "1sessionAAA" and doc["key"] is None
    assert doc["server"] == "ws1" and doc["created_ms"] == created
    assert doc["seen_ms"] == created + 60000 and doc["seen"] == iso(created + 60000)
    assert doc["reconnects"] is None and doc["inst"] == "web2" and doc["moved"] is False
    assert 3500000 < doc["ttl_ms"] <= 3600000

    r.persist(k("s:1sessionAAA"))
    assert json.loads(ctl(redis_server, "lookup", BE, "1sessionAAA", "--json").stdout)[
        "ttl_ms"] == -1


def test_lookup_missing(redis_server):
    r = redis_server.client()
    seed(r)
    p = ctl(redis_server, "lookup", BE, "1nothere")
    assert_error(p, 1, "no such session '1nothere'")
    assert p.stdout == ""
    # a typo in the backend is not reported as a missing session
    assert_error(ctl(redis_server, "lookup", "be_wz", "1nothere"), 3, "unknown backend 'be_wz'")


def key_id(secret, key):
    """The record id of an affinity key, transcribed from agent/sid.h ("k" format)."""
    mac = hmac.new(secret, b"key\x00" + key.encode(), hashlib.sha256).digest()[:18]
    return "k" + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def test_lookup_and_move_by_key(redis_server, tmp_path):
    r = redis_server.client()
    seed(r)
    cur, prev = os.urandom(32), os.urandom(32)
    (tmp_path / "cur.key").write_bytes(cur + b"\n")
    (tmp_path / "prev.key").write_bytes(prev)
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"redis": {"port": redis_server.port},
                               "session": {"secret_file": str(tmp_path / "cur.key"),
                                           "previous_secret_file": str(tmp_path / "prev.key")}}))
    kid = key_id(cur, "user-42")
    seed_session(r, kid, "ws2")
    p = ctl(None, "-c", cfg, "lookup", BE, "--key", "user-42")
    assert p.returncode == 0, p.stderr
    assert "key         user-42\nsession     %s\nrecord      %s\nserver      ws2\n" % (kid, kid) \
        in p.stdout
    doc = json.loads(ctl(None, "-c", cfg, "lookup", BE, "--key", "user-42", "--json").stdout)
    assert (doc["sid"], doc["key"], doc["server"]) == (kid, "user-42", "ws2")
    assert ctl(None, "-c", cfg, "move", BE, "--key", "user-42", "ws1").returncode == 0
    assert harness.session_record(r, kid, BE)["server"] == "ws1"
    # a record from before the rotation is still found under the previous id
    old = key_id(prev, "user-7")
    seed_session(r, old, "ws10")
    doc = json.loads(ctl(None, "-c", cfg, "lookup", BE, "--key", "user-7", "--json").stdout)
    assert (doc["sid"], doc["server"]) == (old, "ws10")
    assert_error(ctl(None, "-c", cfg, "lookup", BE, "--key", "user-8"), 1,
                 "no session for key 'user-8'")
    # usage: the key replaces <sid>; it needs the secret; only lookup and move take it
    assert_error(ctl(redis_server, "lookup", BE, "--key", "user-42"), 2, "secret_file")
    assert_error(ctl(None, "-c", cfg, "lookup", BE, "1x", "--key", "u"), 2, "too many")
    assert_error(ctl(None, "-c", cfg, "status", "--key", "u"), 2, "--key does not apply")


# ---- drain / maint / ready -------------------------------------------------------

def test_drain_with_deadline_writes_state_and_publishes(redis_server, watchers):
    r = redis_server.client()
    seed(r)
    w = watchers(redis_server)
    before = now_ms()
    p = ctl(redis_server, "drain", BE, "ws1", "--deadline", "10m", "--close-at-deadline")
    after = now_ms()
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("be_ws/ws1: drain until ")
    assert "(was ready); event sent to 1 subscriber" in p.stdout
    v = r.hget(k("state"), "ws1")
    m = re.fullmatch(r"drain:(\d+):close", v)
    assert m, v
    assert before + 600000 <= int(m.group(1)) <= after + 600000
    line = w.next_line()
    hms = time.strftime("%H:%M:%S", time.gmtime(int(m.group(1)) // 1000))
    assert re.search(r" stickyctl@\S+ server-state be_ws/ws1 drain until %s\.\d{3}Z "
                     r"\(close at deadline\)$" % hms, line), line
    # the status table shows the same deadline
    _, _, rows, _ = table_rows(ctl(redis_server, "status", BE).stdout, BE)
    assert rows["ws1"]["STATE"].startswith("drain until %sZ (in " % hms)
    assert rows["ws1"]["STATE"].endswith(" close")
    assert w.stop() == 0


def test_drain_maint_ready_cycle_json_events(redis_server, watchers):
    r = redis_server.client()
    seed(r)
    w = watchers(redis_server, "--json")
    assert ctl(redis_server, "drain", BE, "ws10").returncode == 0
    assert r.hget(k("state"), "ws10") == "drain:0"
    ev = json.loads(w.next_line())
    assert ev["kind"] == "server-state" and ev["backend"] == BE and ev["server"] == "ws10"
    assert ev["state"] == "drain" and ev["deadline_ms"] == 0
    assert ev["close_at_deadline"] is False and ev["version"] == 1
    assert ev["origin"].startswith("stickyctl@") and abs(ev["ts_ms"] - now_ms()) < 60000

    p = ctl(redis_server, "maint", BE, "ws10")
    assert p.returncode == 0 and "(was drain (no deadline))" in p.stdout
    assert r.hget(k("state"), "ws10") == "maint"
    assert json.loads(w.next_line())["state"] == "maint"

    p = ctl(redis_server, "undrain", BE, "ws10")
    assert p.returncode == 0 and "be_ws/ws10: ready (was maint)" in p.stdout
    assert not r.hexists(k("state"), "ws10")
    assert json.loads(w.next_line())["state"] == "ready"

    # `ready` is the same command; the seeded maint on ws3 goes away
    assert ctl(redis_server, "ready", BE, "ws3").returncode == 0
    assert not r.hexists(k("state"), "ws3")
    ev = json.loads(w.next_line())
    assert (ev["server"], ev["state"]) == ("ws3", "ready")
    assert w.stop() == 0


def test_unknown_server_and_backend_refused_unless_force(redis_server):
    r = redis_server.client()
    seed(r)
    before = r.hgetall(k("state"))
    line = assert_error(ctl(redis_server, "drain", BE, "ws9"), 3, "unknown server 'ws9'",
                        "in backend 'be_ws'", "--force")
    assert "known: ws1, ws2, ws3, ws10" in line
    assert_error(ctl(redis_server, "maint", "be_new", "x1"), 3, "unknown backend 'be_new'",
                 "known: be_api, be_ws")
    assert r.hgetall(k("state")) == before
    assert not r.exists(k("state", "be_new"))
    # --force: the operator knows better (a server about to be added)
    p = ctl(redis_server, "drain", BE, "ws9", "--force")
    assert p.returncode == 0, p.stderr
    assert r.hget(k("state"), "ws9") == "drain:0"
    assert ctl(redis_server, "maint", "be_new", "x1", "--force").returncode == 0
    assert r.hget(k("state", "be_new"), "x1") == "maint"
    # a backend known only from its state hash is known from then on
    assert ctl(redis_server, "ready", "be_new", "x1").returncode == 0


# ---- move ---------------------------------------------------------------------------

def test_move_rewrites_pin_and_publishes(redis_server, watchers):
    r = redis_server.client()
    seed(r)
    seed_session(r, "1movable", "ws1", ttl_ms=500000)
    w = watchers(redis_server)
    p = ctl(redis_server, "move", BE, "1movable", "ws2")
    assert p.returncode == 0, p.stderr
    assert "session 1movable moved ws1 -> ws2" in p.stdout
    rec = harness.session_record(r, "1movable", BE)
    assert rec["server"] == "ws2" and rec["moved"] and rec["inst"] == "web2"
    assert 0 < r.pttl(k("s:1movable")) <= 500000  # the TTL is left alone
    line = w.next_line()
    assert re.search(r" stickyctl@\S+ session-moved be_ws sid=1movable ws1 -> ws2$", line), line
    assert "note:" not in p.stdout  # ws2 drains, deadline ahead: the agents keep the pin
    # already there: nothing to publish
    p = ctl(redis_server, "move", BE, "1movable", "ws2")
    assert p.returncode == 0 and "already pinned to ws2" in p.stdout
    assert w.stop() == 0
    assert w.lines == [line]
    # a target the agents will not keep is still written, with a warning
    p = ctl(redis_server, "move", BE, "1movable", "ws3")
    assert p.returncode == 0 and "note: ws3 is in maint: the agents will re-pin" in p.stdout
    p = ctl(redis_server, "move", BE, "1movable", "ws10")
    assert p.returncode == 0 and "note: ws10 is down in HAProxy" in p.stdout
    assert harness.session_record(r, "1movable", BE)["server"] == "ws10"


def test_move_errors(redis_server):
    r = redis_server.client()
    seed(r)
    seed_session(r, "1movable", "ws1")
    assert_error(ctl(redis_server, "move", BE, "1movable", "ws9"), 3, "unknown server 'ws9'")
    assert harness.session_record(r, "1movable", BE)["server"] == "ws1"
    assert_error(ctl(redis_server, "move", BE, "1gone", "ws2"), 1, "no such session '1gone'")
    assert not r.exists(k("s:1gone"))  # no bare pin created
    assert_error(ctl(redis_server, "move", "be_x", "1movable", "ws2"), 3, "unknown backend")


# ---- watch -------------------------------------------------------------------------

def test_watch_reports_undecodable_and_continues(redis_server, watchers):
    r = redis_server.client()
    seed(r)
    w = watchers(redis_server)
    r.publish(CHANNEL, b"\xff\xff\xff not protobuf")
    err = w.next_line(stderr=True)
    assert err.startswith("stickyctl: undecodable message on sticky:events (")
    assert ctl(redis_server, "maint", BE, "ws1").returncode == 0
    assert w.next_line().endswith("server-state be_ws/ws1 maint")
    assert w.stop() == 0  # SIGTERM is a normal end


# ---- configuration, prefix, auth ------------------------------------------------------

def test_config_file_prefix_and_channel(redis_server, tmp_path, watchers):
    r = redis_server.client()
    seed(r, prefix="acme:")
    cfg = tmp_path / "ctl.json"
    cfg.write_text(json.dumps({"redis": {"host": "127.0.0.1", "port": redis_server.port,
                                         "prefix": "acme:"},
                               "events": {"channel": "acme-events"}}))
    p = ctl(None, "-c", cfg, "status", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["prefix"] == "acme:" and [b["name"] for b in doc["backends"]] == ["be_api", BE]
    # the channel named in the file, not the one derived from the prefix
    w = watchers(redis_server, channel="acme-events", options=["-c", cfg])
    assert ctl(None, "-c", cfg, "drain", BE, "ws1").returncode == 0
    assert r.hget(k("state", prefix="acme:"), "ws1") == "drain:0"
    assert not r.exists(k("state"))  # nothing under the default prefix
    assert w.next_line().endswith("server-state be_ws/ws1 drain")
    assert w.stop() == 0
    # --prefix overrides the file's prefix (and the channel derived from a prefix)
    assert ctl(redis_server, "--prefix", "acme:", "status", BE).returncode == 0
    assert_error(ctl(redis_server, "--prefix", "other:", "status", BE), 3, "under prefix 'other:'")


def test_password_from_environment(procs):
    pw = "s3cret-%d" % os.getpid()
    red = procs.redis(start=False)
    red.argv += ["--requirepass", pw]
    red.client = lambda **kw: harness.Redis.client(red, password=pw, **kw)
    red.start()
    seed(red.client())
    p = ctl(red, "status", BE, env={"STICKYD_REDIS_PASSWORD": pw})
    assert p.returncode == 0, p.stderr
    assert pw not in p.stdout + p.stderr
    p = ctl(red, "status", BE, env={"STICKYD_REDIS_PASSWORD": "wrong"})
    line = assert_error(p, 4, "redis 127.0.0.1:%d" % red.port)
    assert "wrong" not in line
    assert_error(ctl(red, "status", BE), 4)  # no password: NOAUTH


# ---- failures -------------------------------------------------------------------------

def test_unreachable_redis_fails_at_once(tmp_path):
    port = harness.free_port()  # nothing listens there
    # --timeout 60s: a refused connection must end it long before that
    p = ctl(None, "--timeout", "60s", "status", addr="127.0.0.1:%d" % port, timeout=15)
    assert_error(p, 4, "redis 127.0.0.1:%d" % port, "refused")
    p = ctl(None, "lookup", BE, "1x", addr="unix:%s" % (tmp_path / "none.sock"), timeout=15)
    assert_error(p, 4, "No such file")


def test_silent_redis_times_out():
    """A peer that accepts TCP but never answers: the handshake deadline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        p = ctl(None, "--timeout", "300ms", "drain", BE, "ws1", addr="127.0.0.1:%d" % port)
    assert_error(p, 4, "timeout")


@pytest.mark.parametrize("args, needle", [
    ([], "no command given"),
    (["frob"], "unknown command 'frob'"),
    (["--bogus", "status"], "unknown option '--bogus'"),
    (["status", "--timeout"], "needs a value"),
    (["--timeout", "soon", "status"], "bad duration 'soon' for --timeout"),
    (["drain", BE, "ws1", "--deadline", "10x"], "bad duration '10x' for --deadline"),
    (["drain", BE, "ws1", "--close-at-deadline"], "needs a --deadline"),
    (["lookup", BE], "missing arguments"),
    (["move", BE, "1x"], "missing arguments"),
    (["status", "a", "b"], "too many arguments"),
    (["status", "--deadline", "1m"], "--deadline does not apply"),
    (["drain", BE, "ws1", "--json"], "--json does not apply"),
    (["status", "be{x}"], "bad backend"),
    (["-c", "/nonexistent/stickyd.json", "status"], "/nonexistent/stickyd.json"),
])
def test_usage_errors_exit_2_before_connecting(args, needle):
    # a closed port: exit 2, never 4, proves arguments are checked first
    p = ctl(None, *args, addr="127.0.0.1:%d" % harness.free_port())
    assert_error(p, 2, needle)
    assert p.stdout == ""


def test_help():
    p = ctl(None, "--help")
    assert p.returncode == 0 and p.stderr == ""
    for cmd in ("status", "lookup", "move", "drain", "undrain", "ready", "maint", "watch"):
        assert "\n  %s" % cmd in p.stdout
        c = ctl(None, cmd, "--help")
        assert c.returncode == 0 and c.stdout.startswith("usage: stickyctl [options] " + cmd)
    for code in ("0  success", "1  not found", "2  usage error", "3  unknown backend",
                 "4  Redis unreachable"):
        assert code in p.stdout


# ---- with a real agent ----------------------------------------------------------------

def agent_counter(agent, name):
    """One of the agent's counters, from the lines SIGUSR1 writes to its log."""
    return harness.agent_stats(agent)[name]


def test_agent_obeys_move_and_maint(procs, tmp_path):
    """A session made by a real agent (SPOP sticky-assign) is found by lookup,
    moved by move (the agent then serves the new pin), and re-pinned by the
    agent once stickyctl puts its server in maintenance."""
    from spop_client import SpopClient

    red = procs.redis()
    r = red.client()
    servers = {"ws1": 1, "ws2": 1, "ws3": 1}
    agent = procs.stickyd(name="agent1", redis_port=red.port, backends={BE: servers},
                          instance="agent1", syslog_udp=False, log_level="info",
                          extra={"redis": {"timeout": "200ms"}})
    c = SpopClient("127.0.0.1", agent.port)
    try:
        c.hello()

        def assign(sid=None):
            return c.notify("sticky-assign", {"backend": BE, "sid": sid, "inst": "haproxy-1",
                                              "uid": "uid-%d" % time.monotonic_ns()})
        v = wait_until(lambda: (lambda x: x if x.get("action") == "new" else None)(assign()),
                       timeout=10, what="agent connected to Redis")
        sid, first = v["sid"], v["server"]
        # the agent reports its servers and heartbeat itself (fleet.c, each resync)
        want = {s: "%d ready" % w for s, w in servers.items()}
        wait_until(lambda: r.hgetall(k("servers")) == want, timeout=10,
                   what="the agent's servers view in Redis")
        doc = json.loads(ctl(red, "status", BE, "--json").stdout)["backends"][0]
        assert [(i["name"], i["live"]) for i in doc["instances"]] == [("agent1", True)]
        assert [(s["name"], s["state"], s["weight"]) for s in doc["servers"]] == [
            ("ws1", "ready", 1), ("ws2", "ready", 1), ("ws3", "ready", 1)]

        p = ctl(red, "lookup", BE, sid, "--json")
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert doc["server"] == first and doc["inst"] == "agent1" and not doc["moved"]

        target = sorted(s for s in servers if s != first)[0]
        received = agent_counter(agent, "events_received")
        assert ctl(red, "move", BE, sid, target).returncode == 0
        wait_until(lambda: agent_counter(agent, "events_received") > received, timeout=10,
                   what="the agent got the session-moved event")
        h = assign(sid)
        assert (h["action"], h["server"], h["set_cookie"]) == ("hit", target, 1)
        sid = h["sid"]  # the client keeps the cookie that names its new server
        assert assign(sid)["server"] == target

        received = agent_counter(agent, "events_received")
        p = ctl(red, "maint", BE, target)
        assert p.returncode == 0 and "event sent to 1 subscriber" in p.stdout  # the agent
        wait_until(lambda: agent_counter(agent, "events_received") > received, timeout=10,
                   what="the agent decoded stickyctl's server-state event")
        h = assign(sid)
        assert h["action"] == "repin" and h["server"] not in (target,)
        assert json.loads(ctl(red, "lookup", BE, sid, "--json").stdout)["server"] == h["server"]
        assert ctl(red, "ready", BE, target).returncode == 0

        # a key-affinity session, found from the agent's own configuration
        kv = c.notify("sticky-assign", {"backend": BE, "sid": None, "inst": "haproxy-1",
                                        "key": "tenant-9", "uid": "uid-k"})
        p = ctl(None, "-c", agent.config_path, "lookup", BE, "--key", "tenant-9", "--json")
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert doc["server"] == kv["server"]
        assert doc["sid"] == key_id(agent.secret_file.read_bytes().rstrip(b"\n"), "tenant-9")
    finally:
        c.close()
