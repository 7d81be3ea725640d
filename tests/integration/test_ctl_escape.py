"""stickyctl and names it did not write (issue 12 items 9 and 10), against a real
redis-server: server, instance and state values planted in Redis with an escape
sequence, a newline and bytes that are not UTF-8; events with such names published
on the channel as a hostile publisher would (protobuf bytes built here from
proto/events.proto); heartbeat scores that are not times. Text output must show
every such byte escaped (\\xNN) and never let one reach the terminal, --json must
keep every field (invalid bytes as U+00NN), arguments with control characters are
refused, and the ASan + UBSan build of stickyctl (build/san/stickyctl) must get
through the same scores without a report.
"""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import harness
from test_stickyctl import BE, CHANNEL, STICKYCTL, assert_error, ctl, k, now_ms, seed, watchers  # noqa: F401

SAN_STICKYCTL = harness.REPO / "build" / "san" / "stickyctl"

CLEAR = "ws\x1b[2J\x1b[H"           # clears the operator's screen
FORGED = "ws1\nbackend be_ws: 0 servers"  # a second, forged line
RAW = b"s\xff\xfe1"                 # not UTF-8
INST = "web\x1b]0;pwned\x07"        # sets the terminal's title


def hostile_seed(r):
    now = now_ms()
    p = r.pipeline()
    p.hset(k("servers"), mapping={CLEAR: "1 ready", FORGED: "2 ready", RAW: "3 re\x1bdy"})
    p.hset(k("conns"), mapping={CLEAR: 4, RAW: 1})
    p.hset(k("i:" + INST), mapping={CLEAR: 4, RAW: 1})
    p.zadd(k("insts"), {INST: now})
    p.hset(k("state"), mapping={FORGED: "bogus\x1b[31m"})
    p.execute()


def no_terminal_codes(text):
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text, repr(text)


def test_status_text_escapes_names(redis_server):
    r = redis_server.client()
    hostile_seed(r)
    p = ctl(redis_server, "status", BE)
    assert p.returncode == 0, p.stderr
    no_terminal_codes(p.stdout)
    lines = p.stdout.splitlines()
    # title, header, one line per server: the newline in a name forged nothing
    assert lines[0] == "backend be_ws: 3 servers, 5 live connections, 1 live instance"
    assert len(lines) == 5, lines
    assert re.split(r"\s{2,}", lines[1]) == ["SERVER", "STATE", "CONNS",
                                             "web\\x1b]0;pwned\\x07", "WEIGHT"]
    rows = {re.split(r"\s{2,}", l)[0]: re.split(r"\s{2,}", l) for l in lines[2:]}
    assert rows["s\\xff\\xfe1"] == ["s\\xff\\xfe1", "re\\x1bdy (HAProxy)", "1", "1", "3"]
    assert rows["ws\\x1b[2J\\x1b[H"][1:] == ["ready", "4", "4", "1"]
    assert rows["ws1\\x0abackend be_ws: 0 servers"][1:] == ["unknown (bogus\\x1b[31m)", "0",
                                                           "0", "2"]


def test_status_json_keeps_invalid_bytes(redis_server):
    r = redis_server.client()
    hostile_seed(r)
    p = ctl(redis_server, "status", BE, "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.isascii()  # every non-ASCII character as \\uXXXX
    assert "\\u00ff\\u00fe" in p.stdout.lower()  # the raw bytes, visible
    doc = json.loads(p.stdout)
    be = doc["backends"][0]
    assert [i["name"] for i in be["instances"]] == [INST]
    srv = {s["name"]: s for s in be["servers"]}
    # nothing dropped: the invalid bytes are the characters U+00FF, U+00FE
    assert set(srv) == {CLEAR, FORGED, "s\u00ff\u00fe1"}
    assert srv["s\u00ff\u00fe1"]["per_instance"] == {INST: 1}
    assert srv["s\u00ff\u00fe1"]["haproxy_state"] == "re\x1bdy"
    assert srv[FORGED]["admin_raw"] == "bogus\x1b[31m" and srv[FORGED]["state"] == "unknown"
    assert srv[CLEAR]["conns"] == 4 and srv[CLEAR]["per_instance"] == {INST: 4}


def test_unknown_names_listed_escaped(redis_server):
    r = redis_server.client()
    hostile_seed(r)
    line = assert_error(ctl(redis_server, "drain", BE, "ws9"), 3, "unknown server 'ws9'")
    no_terminal_codes(line)
    assert "ws\\x1b[2J\\x1b[H" in line and "ws1\\x0abackend" in line and "s\\xff\\xfe1" in line


def test_lookup_escapes_the_record(redis_server):
    r = redis_server.client()
    hostile_seed(r)
    t = now_ms()
    r.set(k("s:1hostile"), b"s\x1b[2J %d %d - web\n2" % (t, t))
    p = ctl(redis_server, "lookup", BE, "1hostile")
    assert p.returncode == 0, p.stderr
    no_terminal_codes(p.stdout)
    assert "server      s\\x1b[2J\n" in p.stdout and "instance    web\\x0a2\n" in p.stdout
    doc = json.loads(ctl(redis_server, "lookup", BE, "1hostile", "--json").stdout)
    assert doc["server"] == "s\x1b[2J" and doc["inst"] == "web\n2"


@pytest.mark.parametrize("args", [
    ["status", "be\x1b[2J"],
    ["drain", BE, "ws1\n"],
    ["maint", BE, "ws\x07"],
    ["lookup", BE, "1abc\r"],
    ["move", BE, "1abc", "ws\x7f"],
    ["lookup", BE, "--key", "user\x1b42"],
])
def test_control_characters_in_arguments_refused(args):
    p = ctl(None, *args, addr="127.0.0.1:%d" % harness.free_port())
    line = assert_error(p, 2, "control characters are not allowed")
    no_terminal_codes(line)
    assert p.stdout == ""


# ---- events from the channel ---------------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num, value):
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    value = value if isinstance(value, bytes) else value.encode()
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def server_state_event(backend, server, state=2, origin=b"evil"):
    """An Event{server_state_changed} (proto/events.proto) as raw protobuf bytes."""
    body = _field(1, backend) + _field(2, server) + _field(3, state)
    return _field(1, 1) + _field(2, now_ms()) + _field(3, origin) + _field(13, body)


def test_watch_escapes_event_names(redis_server, watchers):
    r = redis_server.client()
    seed(r)
    w = watchers(redis_server)
    wj = watchers(redis_server, options=["--redis", "127.0.0.1:%d" % redis_server.port,
                                         "--json"])
    harness.wait_until(lambda: dict(r.pubsub_numsub(CHANNEL)).get(CHANNEL, 0) >= 2,
                       what="both watchers subscribed")
    r.publish(CHANNEL, server_state_event(b"be\x1b[2J", b"s1\n12:00:00.000 lb1 forged", 2,
                                          origin=b"o\xff"))
    line = w.next_line()
    no_terminal_codes(line)
    assert line.endswith(" o\\xff server-state be\\x1b[2J/s1\\x0a12:00:00.000 lb1 forged maint")
    # the next event is the next line: nothing was forged in between
    assert ctl(redis_server, "maint", BE, "ws1").returncode == 0
    assert w.next_line().endswith("server-state be_ws/ws1 maint")
    doc = json.loads(wj.next_line())
    assert doc["backend"] == "be\x1b[2J" and doc["server"] == "s1\n12:00:00.000 lb1 forged"
    assert doc["origin"] == "o\u00ff"  # kept, not dropped
    assert w.stop() == 0 and wj.stop() == 0


# ---- heartbeat scores that are not times (item 10) --------------------------------------

BAD_SCORES = {"huge": "1e300", "neg_huge": "-1e300", "pinf": "inf", "ninf": "-inf",
              "neg": "-5", "frac": "1.5"}


@pytest.mark.parametrize("binary", [STICKYCTL, SAN_STICKYCTL], ids=["plain", "asan_ubsan"])
def test_status_with_scores_that_are_not_times(redis_server, binary, tmp_path):
    if not binary.exists():
        pytest.fail("%s is not built: run `make %s`" % (binary, binary.relative_to(harness.REPO)))
    r = redis_server.client()
    t0 = seed(r)
    r.zadd(k("insts"), {name: float(v) for name, v in BAD_SCORES.items()})
    logs = tmp_path / "sanitizer-reports"
    logs.mkdir()
    env = dict(os.environ)
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:log_path=%s/ubsan" % logs
    env["ASAN_OPTIONS"] = "detect_leaks=1:log_path=%s/asan" % logs
    for extra in ([], ["--json"]):
        p = subprocess.run([str(binary), "--redis", "127.0.0.1:%d" % redis_server.port, "status",
                            BE] + extra, capture_output=True, text=True, timeout=30, env=env,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        assert list(logs.iterdir()) == [], [f.read_text() for f in logs.iterdir()]
        if extra:
            insts = {i["name"]: i for i in json.loads(p.stdout)["backends"][0]["instances"]}
            for name in BAD_SCORES:
                assert insts[name] == {"name": name, "heartbeat_ms": 0, "live": False}
            assert insts["web1"] == {"name": "web1", "heartbeat_ms": t0, "live": True}
        else:
            notes = [l for l in p.stdout.splitlines() if l.startswith("(instance ")]
            for name in BAD_SCORES:
                assert "(instance %s: heartbeat score is not a time, not counted)" % name in notes
            # the live instances still count; the bad ones are no columns
            assert "2 live instances" in p.stdout.splitlines()[0]
