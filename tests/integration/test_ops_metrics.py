"""Metrics and health over HTTP (issue 9), against the real things: HAProxy, Redis,
stickyd, WebSocket clients, and a real Prometheus (Debian's `prometheus`) scraping
the agent on loopback, asked through its HTTP API. promtool checks the exposition;
the Grafana dashboard's queries must name only metrics the agent exposes, and must
be accepted by Prometheus.
"""
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse

import pytest

import harness
from harness import LOOPBACK, REPO, agent_stats, free_port, http_get, wait_until
from spop_client import SpopClient

DASHBOARD = REPO / "packaging" / "grafana" / "stickyd-dashboard.json"
ALERTS = REPO / "packaging" / "prometheus" / "stickyd-alerts.yml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def metrics_extra(port):
    return {"metrics": {"listen": "%s:%d" % (LOOPBACK, port)}}


def scrape(port):
    status, headers, body = http_get("http://%s:%d/metrics" % (LOOPBACK, port))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return body.decode()


def samples(text):
    """{series (name{labels}): float} of an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


class Prometheus(harness.Proc):
    """prometheus on a free loopback port, scraping `targets` every 500 ms and
    evaluating the shipped alert rules, with its TSDB in the test's directory."""

    def __init__(self, workdir, targets):
        super().__init__("prometheus", workdir)
        self.port = free_port()
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n"
            "  evaluation_interval: 500ms\n"
            "rule_files: [\"%s\"]\n"
            "scrape_configs:\n  - job_name: stickyd\n    static_configs:\n"
            "      - targets: [%s]\n" % (ALERTS, ", ".join('"%s"' % t for t in targets)))
        self.argv = [PROMETHEUS, "--config.file", cfg,
                     "--storage.tsdb.path", self.workdir / "prom-data",
                     "--web.listen-address", "%s:%d" % (LOOPBACK, self.port),
                     "--log.level", "warn"]

    def ready(self):
        return http_get("http://%s:%d/-/ready" % (LOOPBACK, self.port), timeout=1)[0] == 200

    def query(self, expr):
        url = "http://%s:%d/api/v1/query?%s" % (LOOPBACK, self.port,
                                                 urllib.parse.urlencode({"query": expr}))
        status, _, body = http_get(url)
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", (expr, doc)
        return doc["data"]["result"]

    def rules(self):
        url = "http://%s:%d/api/v1/rules" % (LOOPBACK, self.port)
        doc = json.loads(http_get(url)[2])
        assert doc["status"] == "success", doc
        return [r for g in doc["data"]["groups"] for r in g["rules"]]

    def value(self, expr):
        """The sum of an instant query's values (0 when it has no series)."""
        return sum(float(r["value"][1]) for r in self.query(expr))


def dashboard_exprs():
    doc = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in doc["panels"]:
        for t in panel.get("targets", []):
            exprs.append(t["expr"])
    return exprs


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "bool", "and", "or", "unless",
                   "group_left", "group_right", "offset"}


def metric_names(expr):
    """Metric names a PromQL expression reads: identifiers outside label matchers,
    strings, ranges and groupings, that are neither numbers, keywords nor functions."""
    bare = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r"(?<![A-Za-z_:])\d+(\.\d+)?([eE][-+]?\d+)?", " ", bare)
    names = set()
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", bare):
        if m.group(2) is None and m.group(1) not in PROMQL_KEYWORDS:
            names.add(m.group(1))
    return names


def promql(expr):
    """A dashboard query with Grafana's own variables replaced, for Prometheus."""
    return expr.replace("$__rate_interval", "1m")


def exposed_names(text):
    names = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    return names


def test_prometheus_sees_decisions_after_real_upgrades(procs, ws_pool):
    mport = free_port()
    st = procs.stack(instances=1, stickyd={"extra": metrics_extra(mport)})
    st.wait_agents_up()
    st.wait_servers_up()
    lb = st.lbs[0]
    prom = procs.add(Prometheus(procs.workdir, ["%s:%d" % (LOOPBACK, mport)]))
    prom.start(timeout=30)
    wait_until(lambda: prom.value('up{job="stickyd"}') == 1, timeout=15,
               what="Prometheus scraping the agent")
    before = prom.value("sum(stickyd_decisions_total)")

    n = 12
    results = [harness.ws_open(lb.ws_url) for _ in range(n)]
    assert all(r.server in {w.name for w in st.ws} for r in results)
    # the same clients again with their cookies: hits
    for r in results[:4]:
        assert harness.ws_open(lb.ws_url, cookie=r.cookie()).server == r.server
    # a forged cookie: counted invalid, and a new session
    harness.ws_open(lb.ws_url, cookie="forged-0000")

    wait_until(lambda: prom.value('sum(stickyd_decisions_total{action="new"})') >= n + 1,
               timeout=15, what="new decisions in Prometheus")
    wait_until(lambda: prom.value('stickyd_decisions_total{action="hit"}') >= 4, timeout=15,
               what="hits in Prometheus")
    assert prom.value("sum(stickyd_decisions_total)") >= before + n + 5
    wait_until(lambda: prom.value("stickyd_sid_invalid_total") >= 1, timeout=10,
               what="the invalid cookie in Prometheus")
    assert prom.value("stickyd_decision_latency_seconds_count") >= n + 5
    assert prom.value("stickyd_redis_round_trip_seconds_count") >= n + 5
    assert prom.value("stickyd_redis_connected") == 1
    assert prom.value('stickyd_fallbacks_total') == 0
    assert prom.value('stickyd_build_info{version!=""}') == 1

    # the open tunnels are in the cluster-wide counts the agent reads back
    conns = [ws_pool.open(lb.ws_url) for _ in range(5)]
    wait_until(lambda: prom.value('sum(stickyd_server_connections{backend="be_ws"})') >= 5,
               timeout=15, what="cluster-wide connections in Prometheus")
    text = scrape(mport)
    s = samples(text)
    for w in st.ws:
        assert s['stickyd_server_weight{backend="be_ws",server="%s"}' % w.name] == 100
        assert s['stickyd_server_state{backend="be_ws",server="%s",state="ready"}' % w.name] == 1
    for c in conns:
        c.close()

    # the SIGUSR1 dump and /metrics are the same counters
    stats = agent_stats(lb.stickyd)
    s = samples(scrape(mport))
    for action in ("new", "hit", "fallback", "none"):
        assert stats["decision_" + action] == s['stickyd_decisions_total{action="%s"}' % action]
    assert stats["sid_invalid"] == s["stickyd_sid_invalid_total"]
    assert stats["spop_frames_in"] <= s["stickyd_spop_frames_in_total"]

    # promtool's lint is clean on the real exposition, after traffic
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", \
        out.stdout + out.stderr

    # every dashboard query names only exposed metrics, and Prometheus accepts it
    names = exposed_names(text)
    exprs = dashboard_exprs()
    assert len(exprs) >= 8
    for expr in exprs:
        missing = metric_names(expr) - names
        assert not missing, "dashboard query %r names unknown metrics %s" % (expr, missing)
        prom.query(promql(expr))
    # the shipped alert rules: valid for promtool, loaded and evaluated without error by
    # Prometheus, naming only exposed stickyd metrics; none fires on a healthy agent
    out = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_until(lambda: all(r.get("lastEvaluation", "").startswith("20") for r in prom.rules()),
               timeout=10, what="every alert rule evaluated")
    rules = prom.rules()
    assert len(rules) >= 5 and all(r["health"] == "ok" for r in rules), rules
    for r in rules:
        missing = {n for n in metric_names(r["query"]) if n.startswith("stickyd_")} - names
        assert not missing, (r["name"], missing)
        if r["name"] != "StickydAgentDownInHAProxy":  # needs HAProxy's exporter scraped
            assert r["state"] == "inactive", r
    # and the data the dashboard shows is there: the decision-rate panel has a value
    wait_until(lambda: prom.value("sum(rate(stickyd_decisions_total[5s]))") > 0, timeout=10,
               what="a decision rate")


def test_health_endpoints_follow_redis_without_failing_on_fallback(procs):
    mport = free_port()
    redis_port = free_port()
    s = procs.stickyd(redis_port=redis_port, backends={"be_ws": ["ws1"]},
                      extra=metrics_extra(mport))
    base = "http://%s:%d" % (LOOPBACK, mport)
    assert http_get(base + "/healthz")[0] == 200
    status, _, body = http_get(base + "/readyz")
    assert status == 200 and b"redis: fallback" in body
    # a new session is answered from the cookie alone; an affinity key needs Redis to
    # arbitrate, so without Redis it falls back, counted by cause
    with SpopClient(LOOPBACK, s.port) as c:
        c.hello()
        assert c.notify("sticky-assign", {"backend": "be_ws", "sid": None})["action"] == "new"
        v = c.notify("sticky-assign", {"backend": "be_ws", "key": "user-42"})
        assert v["action"] == "fallback", v
    m = samples(scrape(mport))
    assert m['stickyd_fallbacks_total{cause="redis_down"}'] == 1
    assert m['stickyd_decisions_total{action="fallback"}'] == 1
    assert m['stickyd_decisions_total{action="new"}'] == 1
    assert m["stickyd_decision_local_total"] == 1
    assert m["stickyd_redis_connected"] == 0

    procs.redis(port=redis_port)
    wait_until(lambda: b"redis: connected" in http_get(base + "/readyz")[2], timeout=10,
               what="readyz to see Redis")
    assert http_get(base + "/nope")[0] == 404

    # reloads are counted by result
    s.update_config(log_level="debug")
    s.reload()
    wait_until(lambda: samples(scrape(mport)).get('stickyd_config_reloads_total{result="ok"}')
               == 1, timeout=5, what="the reload counted")
    s.config_path.write_text("{not json")
    s.reload()
    wait_until(lambda: samples(scrape(mport)).get(
        'stickyd_config_reloads_total{result="failed"}') == 1, timeout=5,
        what="the failed reload counted")
    assert samples(scrape(mport))["stickyd_config_last_reload_success"] == 0


def test_slow_and_bad_http_clients_do_not_disturb_decisions(procs):
    """Idle sockets past the connection limit, a slowloris header, garbage bytes: the
    agent's SPOP decisions stay prompt, and /healthz answers once the idle ones time out."""
    mport = free_port()
    r = procs.redis()
    s = procs.stickyd(redis_port=r.port, backends={"be_ws": ["ws1", "ws2"]},
                      extra=metrics_extra(mport))
    socks = []
    try:
        for _ in range(38):  # past the limit (32): the rest wait in the listen backlog
            socks.append(socket.create_connection((LOOPBACK, mport), timeout=2))
        slow = socket.create_connection((LOOPBACK, mport), timeout=2)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(slow)
        junk = socket.create_connection((LOOPBACK, mport), timeout=2)
        junk.sendall(b"\x00\xff" * 512 + b"\r\n\r\n")
        socks.append(junk)

        with SpopClient(LOOPBACK, s.port) as c:
            c.hello()
            worst = 0.0
            for i in range(200):
                t0 = time.monotonic()
                v = c.notify("sticky-assign", {"backend": "be_ws", "sid": None})
                worst = max(worst, time.monotonic() - t0)
                assert v["action"] == "new", v
        assert worst < 0.2, "a decision took %.3fs while the metrics port was flooded" % worst
    finally:
        for k in socks:
            k.close()
    # the idle ones are gone (closed here, or timed out there): the endpoint serves again
    wait_until(lambda: http_get("http://%s:%d/healthz" % (LOOPBACK, mport), timeout=1)[0]
               == 200, timeout=10, what="healthz after the flood")
    assert s.alive


@pytest.mark.parametrize("addr", ["127.0.0.1:notaport", "unix:/tmp/x.sock"])
def test_metrics_listen_is_validated(stickyd_bin, tmp_path, addr):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"metrics": {"listen": addr}}))
    out = subprocess.run([str(stickyd_bin), "--check-config", "--config", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert re.search(r"c\.json:1:\d+: metrics\.listen: ", out.stderr), out.stderr
