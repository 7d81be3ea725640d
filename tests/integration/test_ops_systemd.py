"""systemd integration (issue 9): the sd_notify protocol for real, through a
NOTIFY_SOCKET datagram socket this test binds (exactly what systemd does), the
watchdog, journal-style logging, and the unit file checked by systemd-analyze.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import LOOPBACK, REPO, tcp_accepts, wait_until

UNIT = REPO / "packaging" / "systemd" / "stickyd.service"
MAN = REPO / "build" / "man"


class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self):
        self.dir = harness.short_tmpdir("sdn")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def next(self, timeout=5.0):
        """The next message as a dict of its KEY=VALUE lines."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        self.messages.append(data)
        return dict(line.split("=", 1) for line in data.split("\n") if "=" in line)

    def until(self, key, timeout=5.0):
        """Messages up to and including the first that has key; returns all of them."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            m = self.next(max(0.01, deadline - time.monotonic()))
            seen.append(m)
            if key in m:
                return seen

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify(monkeypatch):
    n = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", n.path)
    yield n
    n.close()


def test_notify_ready_reloading_stopping_and_watchdog(procs, notify, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 200 ms: pings every 100 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    s = procs.stickyd(backends={"be_ws": ["ws1"]}, start=False)
    s.start()
    msgs = notify.until("READY", timeout=5)
    ready = msgs[-1]
    assert ready["READY"] == "1" and ready["STATUS"] == "serving"
    # READY=1 came once the SPOP listener was up: it accepts now
    assert tcp_accepts(s.port)

    t0 = time.monotonic()
    pings = 0
    while time.monotonic() - t0 < 1.0:
        if notify.next().get("WATCHDOG") == "1":
            pings += 1
    assert 6 <= pings <= 14, "%d watchdog pings in 1 s with WATCHDOG_USEC=200000" % pings

    s.update_config(log_level="debug")
    s.reload()
    msgs = notify.until("RELOADING")
    assert re.fullmatch(r"\d+", msgs[-1]["MONOTONIC_USEC"])
    msgs = notify.until("READY")
    assert "reloaded" in msgs[-1]["STATUS"]

    s.config_path.write_text("{broken")
    s.reload()
    notify.until("RELOADING")
    assert "reload failed" in notify.until("READY")[-1]["STATUS"]

    s.signal(signal.SIGTERM)
    msgs = notify.until("STOPPING")
    assert msgs[-1]["STOPPING"] == "1"
    s.popen.wait(5)
    assert s.popen.returncode == 0


def test_watchdog_for_another_pid_is_not_ours(procs, notify, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # systemd meant some other process
    s = procs.stickyd(backends={"be_ws": ["ws1"]})
    msgs = notify.until("READY")
    assert not any("WATCHDOG" in m for m in msgs)
    time.sleep(0.3)
    notify.sock.settimeout(0.05)
    extra = []
    try:
        while True:
            extra.append(notify.sock.recv(4096).decode())
    except socket.timeout:
        pass
    assert not any("WATCHDOG" in m for m in extra), extra
    assert s.alive


def test_journal_stream_gets_priorities_and_no_timestamps(procs, monkeypatch):
    s = procs.stickyd(backends={"be_ws": ["ws1"]}, start=False)
    s.log_path.touch()  # Proc.start appends to it: stderr is this very file
    st = os.stat(s.log_path)
    monkeypatch.setenv("JOURNAL_STREAM", "%d:%d" % (st.st_dev, st.st_ino))
    s.start()
    wait_until(lambda: "started" in s.log_text(), timeout=5, what="the start line")
    lines = [l for l in s.log_text().splitlines() if not l.startswith("---- start")]
    assert lines and all(re.match(r"<[3467]>(error|warn|info|debug) ", l) for l in lines), lines
    assert any(l.startswith("<6>info stickyd ") for l in lines)
    assert any(l.startswith("<4>warn ") for l in lines)  # Redis is not there: warnings
    assert not any(re.search(r"\d{4}-\d\d-\d\dT\d\d:", l) for l in lines)


def test_log_lines_off_systemd_are_unchanged(procs, monkeypatch):
    # JOURNAL_STREAM naming some other file (a child of a journal-logged shell whose
    # stderr was redirected) must not switch the format
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    s = procs.stickyd(backends={"be_ws": ["ws1"]})
    wait_until(lambda: "started" in s.log_text(), timeout=5, what="the start line")
    started = [l for l in s.log_text().splitlines() if "stickyd 0." in l and "started" in l][0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info stickyd ", started), started


def unit_for(tmp_path, sbindir):
    text = UNIT.read_text().replace("@SBINDIR@", str(sbindir)).replace("@SYSCONFDIR@", "/etc")
    out = tmp_path / "stickyd.service"
    out.write_text(text)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_verifies_and_is_hardened(stickyd_bin, tmp_path):
    subprocess.run(["make", "-s", "man"], cwd=REPO, check=True)
    unit = unit_for(tmp_path, stickyd_bin.parent)
    env = dict(os.environ, MANPATH=str(MAN), SYSTEMD_LOG_LEVEL="notice")
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr

    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "User=stickyd", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "CapabilityBoundingSet=\n", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text, line
    sec = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                         capture_output=True, text=True, env=env)
    m = re.search(r"Overall exposure level for stickyd.service: ([\d.]+) (\w+)", sec.stdout)
    assert m, sec.stdout + sec.stderr
    print("systemd-analyze security: exposure %s %s" % (m.group(1), m.group(2)))
    assert float(m.group(1)) <= 2.0, sec.stdout


def syscall_group(name, seen=None):
    """The system calls of a systemd syscall-filter group, nested groups resolved."""
    seen = set() if seen is None else seen
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                         text=True, check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        if word.startswith("@"):
            if word not in seen:
                seen.add(word)
                calls |= syscall_group(word, seen)
        else:
            calls.add(word)
    return calls


@pytest.mark.skipif(shutil.which("strace") is None or shutil.which("systemd-analyze") is None,
                    reason="needs strace and systemd-analyze")
def test_unit_sandbox_allows_every_syscall_and_family_the_agent_uses(procs, tmp_path):
    """Run the agent through start, Redis, SPOP, metrics scrapes, a reload and a drain
    under strace, and check what it did against the unit's SystemCallFilter and
    RestrictAddressFamilies, as systemd would enforce them."""
    from spop_client import SpopClient
    mport = harness.free_port()
    r = procs.redis()
    s = procs.stickyd(redis_port=r.port, backends={"be_ws": ["ws1", "ws2"]}, start=False,
                      extra={"metrics": {"listen": "%s:%d" % (LOOPBACK, mport)}})
    trace = tmp_path / "strace.out"
    s.argv = ["strace", "-f", "-qq", "-o", trace] + s.argv
    s.start()
    with SpopClient(LOOPBACK, s.port) as c:
        c.hello()
        assert c.notify("sticky-assign", {"backend": "be_ws", "sid": None})["action"] == "new"
    for path in ("/metrics", "/healthz", "/readyz"):
        assert harness.http_get("http://%s:%d%s" % (LOOPBACK, mport, path))[0] == 200
    # strace does not pass signals on: send them to the agent, its child
    agent_pid = int(open("/proc/%d/task/%d/children" % (s.pid, s.pid)).read().split()[0])
    os.kill(agent_pid, signal.SIGHUP)
    wait_until(lambda: "configuration reloaded" in s.log_text(), timeout=5, what="reload")
    os.kill(agent_pid, signal.SIGTERM)
    s.popen.wait(10)

    text = trace.read_text()
    used = set(re.findall(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)", text, re.M))
    assert {"epoll_wait", "accept4", "sendto"} & used, sorted(used)
    used -= {"execve"}  # strace's own exec of the agent; systemd filters after it
    allowed = syscall_group("@system-service")
    denied = syscall_group("@privileged") | syscall_group("@resources")
    assert not used - allowed, "outside @system-service: %s" % sorted(used - allowed)
    assert not used & denied, "in the unit's deny list: %s" % sorted(used & denied)
    families = set(re.findall(r"\bsocket\((AF_[A-Z0-9]+)", text))
    assert families and families <= {"AF_UNIX", "AF_INET", "AF_INET6"}, families
