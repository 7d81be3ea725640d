"""Redis over TLS through the HAProxy beside the agent (issue 11).

hiredis 0.14 has no TLS, so scripts/render-haproxy.py renders (with --redis-tls)
a `listen redis_tls` section: the agent and stickyctl connect to it on loopback
in plaintext and HAProxy connects to Redis with `ssl verify required ca-file ...`
(plus SNI, and a client certificate for mTLS). Real parts only: Debian's
redis-server with --tls-port and --port 0 (no plaintext listener at all), a
throwaway CA and certificates made by openssl in the test's temp dir, real HAProxy,
real WebSocket clients. A wrong CA fails clearly: HAProxy logs why its check
failed, the agent and stickyctl report the closed connection.
"""
import os
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import LOOPBACK, Proc, free_port, lb_spec, wait_until, write_secret
from test_e2e_affinity import AGENT_TIMING, BE, DIAG_RULES, KP, Lb, action
from test_haproxy_spop import BASE, render

STICKYCTL = Path(os.environ.get("STICKYCTL", harness.REPO / "agent" / "stickyctl"))
SNI = "redis.test"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    """A CA, a server certificate for SNI (and 127.0.0.1), a client certificate,
    and a second CA that signed nothing of ours, all in dir."""

    def __init__(self, d):
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        for ca in ("ca", "other-ca"):
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key",
                    "-out", ca + ".pem", "-days", "2", "-subj", "/CN=stickyd test " + ca,
                    cwd=d)
        (d / "srv.ext").write_text("subjectAltName=DNS:%s,IP:127.0.0.1\n"
                                   "extendedKeyUsage=serverAuth\n" % SNI)
        (d / "cli.ext").write_text("extendedKeyUsage=clientAuth\n")
        for name, cn in (("srv", SNI), ("cli", "stickyd-agent")):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
                    name + ".csr", "-subj", "/CN=" + cn, cwd=d)
            openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile",
                    name + ".ext", cwd=d)
        # HAProxy's crt: certificate and key in one PEM file
        (d / "cli-both.pem").write_text((d / "cli.pem").read_text() + (d / "cli.key").read_text())
        self.ca, self.other_ca = d / "ca.pem", d / "other-ca.pem"
        self.client_pem = d / "cli-both.pem"


class TlsRedis(Proc):
    """redis-server on a TLS port only (--port 0)."""

    def __init__(self, workdir, pki, auth_clients=False, name="redis-tls"):
        super().__init__(name, workdir)
        self.pki = pki
        self.port = free_port()
        data = self.workdir / (name + "-data")
        data.mkdir(exist_ok=True)
        self.argv = ["/usr/bin/redis-server", "--port", "0", "--tls-port", self.port,
                     "--bind", LOOPBACK, "--tls-cert-file", pki.dir / "srv.pem",
                     "--tls-key-file", pki.dir / "srv.key", "--tls-ca-cert-file", pki.ca,
                     "--tls-auth-clients", "yes" if auth_clients else "no",
                     "--save", "", "--appendonly", "no", "--dir", data, "--logfile", "",
                     "--daemonize", "no"]

    def client(self):
        import redis
        return redis.Redis(host=LOOPBACK, port=self.port, ssl=True, ssl_ca_certs=str(self.pki.ca),
                           ssl_certfile=str(self.pki.dir / "cli.pem"),
                           ssl_keyfile=str(self.pki.dir / "cli.key"),
                           decode_responses=True, socket_timeout=5)

    def ready(self):
        try:
            return self.client().ping()
        except Exception:  # noqa: BLE001 - not up yet
            return False


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


class TlsLb:
    """One load balancer whose agent reaches Redis through the listen section."""

    def __init__(self, procs, redis, tls):
        self.ws = procs.ws_servers(2)
        self.listen_port = free_port()
        secret = write_secret(procs.workdir / "tls-secret.key")
        h = procs.haproxy("haproxy-lb1")
        s = procs.stickyd("stickyd-lb1", start=False, redis_port=self.listen_port,
                          instance="lb1", secret_file=secret, stats_socket=h.stats_socket,
                          extra={"redis": {"timeout": "200ms", "connect_timeout": "1s"},
                                 "haproxy": AGENT_TIMING["haproxy"]})
        tls = dict(tls, server="%s:%d" % (LOOPBACK, redis.port),
                   listen="%s:%d" % (LOOPBACK, self.listen_port))
        spec = lb_spec("lb1", self.ws, s, {"transport": "udp", "addr": s.syslog_udp_addr}, BE,
                       redis_tls=tls)
        self.lb = Lb("lb1", h, s, spec)
        h.render(spec)
        h.add_after_use_server(DIAG_RULES)
        s.start()
        h.start()
        self.haproxy, self.agent = h, s
        self.lb.wait_up(self.ws, BE)


def ctl(*args, timeout=15):
    if not STICKYCTL.exists():
        pytest.fail("%s is not built: run `make agent/stickyctl`" % STICKYCTL)
    return subprocess.run([str(STICKYCTL), *[str(a) for a in args]], capture_output=True,
                          text=True, timeout=timeout)


def agent_writes_through(t, redis):
    """An upgrade through HAProxy: the agent's record lands in the TLS-only Redis."""
    r = harness.ws_open(t.lb.ws_url)
    assert action(r) == "new", r.headers
    harness.wait_record(redis.client(), r.cookie(), BE, r.server)
    p = ctl("-c", t.agent.config_path, "lookup", BE, r.cookie())
    assert p.returncode == 0, p.stderr
    assert r.server in p.stdout, p.stdout
    p = ctl("-c", t.agent.config_path, "status", BE)
    assert p.returncode == 0 and all(w.name in p.stdout for w in t.ws), (p.stdout, p.stderr)
    return r


def test_agent_and_stickyctl_through_the_tls_listen(procs, pki):
    redis = procs.add(TlsRedis(procs.workdir, pki)).start()
    t = TlsLb(procs, redis, {"ca_file": str(pki.ca), "sni": SNI})
    t.haproxy.wait_server_status("redis_tls", "redis", "UP")
    cfg = t.haproxy.cfg_path.read_text()
    assert ("server redis 127.0.0.1:%d ssl verify required ca-file %s sni str(%s)"
            % (redis.port, pki.ca, SNI)) in cfg
    agent_writes_through(t, redis)
    assert "redis: connected to 127.0.0.1:%d" % t.listen_port in t.agent.log_text()
    # the agent's heartbeat and server list are in Redis too
    wait_until(lambda: "lb1" in redis.client().zrange(KP + "insts", 0, -1), 5,
               what="the agent's heartbeat over TLS")


def test_mutual_tls_needs_the_client_certificate(procs, pki):
    redis = procs.add(TlsRedis(procs.workdir, pki, auth_clients=True)).start()
    t = TlsLb(procs, redis, {"ca_file": str(pki.ca), "sni": SNI, "crt": str(pki.client_pem)})
    agent_writes_through(t, redis)


def test_mutual_tls_without_a_client_certificate_fails_clearly(procs, pki):
    """Redis requires a client certificate and the listen section has none. With
    TLS 1.3 the client certificate is checked after the handshake, so HAProxy's
    check (a handshake) passes: Redis' log names the reason, the agent and
    stickyctl see Redis close each connection."""
    redis = procs.add(TlsRedis(procs.workdir, pki, auth_clients=True)).start()
    t = TlsLb(procs, redis, {"ca_file": str(pki.ca), "sni": SNI})
    wait_until(lambda: "peer did not return a certificate" in redis.log_text(), 10,
               what="Redis to refuse the certificate-less client")
    wait_until(lambda: "redis: connection lost: Server closed the connection"
               in t.agent.log_text(), 10, what="the agent to report the closed connection")
    assert "redis: connected to" not in t.agent.log_text()
    p = ctl("-c", t.agent.config_path, "--timeout", "1s", "status")
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert p.stderr.startswith("stickyctl: redis 127.0.0.1:%d: disconnected: Server closed "
                               "the connection" % t.listen_port), p.stderr
    print("\nRedis: %s\nstickyctl: %s" % (
        [ln for ln in redis.log_text().splitlines() if "certificate" in ln][0],
        p.stderr.strip()))


def test_a_wrong_ca_fails_clearly_and_upgrades_still_get_a_server(procs, pki):
    redis = procs.add(TlsRedis(procs.workdir, pki)).start()
    t = TlsLb(procs, redis, {"ca_file": str(pki.other_ca), "sni": SNI})
    # HAProxy says what is wrong: its check (a TLS handshake) fails verification
    wait_until(lambda: "Server redis_tls/redis is DOWN" in t.haproxy.log_text(), 10,
               what="HAProxy to mark the Redis server DOWN")
    line = [ln for ln in t.haproxy.log_text().splitlines()
            if "Server redis_tls/redis is DOWN" in ln][0]
    assert "Layer6" in line and "SSL handshake failure" in line, line
    # the agent never gets a Redis: it says its connections close
    wait_until(lambda: "redis: connection lost: Server closed the connection"
               in t.agent.log_text(), 10, what="the agent to report the closed connection")
    log = t.agent.log_text()
    assert "redis: connected to" not in log, log
    # stickyctl: exit 4, naming the address it talked to and what happened
    p = ctl("-c", t.agent.config_path, "--timeout", "1s", "status")
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert p.stderr.startswith("stickyctl: redis 127.0.0.1:%d: " % t.listen_port), p.stderr
    assert "closed" in p.stderr or "timeout" in p.stderr, p.stderr
    # and WebSocket upgrades are still served (the agent answers from the hash)
    for _ in range(5):
        r = harness.ws_open(t.lb.ws_url)
        assert r.server in {w.name for w in t.ws}, r
    print("\nHAProxy: %s\nagent: %s\nstickyctl: %s" % (
        line, [ln for ln in log.splitlines() if "redis: connection lost" in ln][0],
        p.stderr.strip()))
    # nothing reached Redis
    assert redis.client().dbsize() == 0


@pytest.mark.parametrize("variant", [
    ["--redis-tls", "127.0.0.1:6390", "--redis-ca", "{ca}"],
    ["--redis-tls", "127.0.0.1:6390", "--redis-ca", "{ca}", "--redis-sni", SNI],
    ["--redis-tls", "127.0.0.1:6390", "--redis-ca", "{ca}", "--redis-sni", SNI,
     "--redis-cert", "{crt}", "--redis-listen", "127.0.0.1:16380"],
], ids=["ca", "ca-sni", "mtls"])
def test_render_redis_tls_loads_cleanly(tmp_path, pki, variant):
    args = [a.format(ca=pki.ca, crt=pki.client_pem) for a in variant]
    p = render(tmp_path / "out", *(BASE + args))
    assert p.returncode == 0, p.stdout.decode()
    cfg = (tmp_path / "out" / "haproxy.cfg").read_text()
    sec = cfg.split("\nlisten redis_tls\n", 1)[1]
    assert "    mode tcp\n" in sec
    assert "    bind %s\n" % (args[args.index("--redis-listen") + 1]
                              if "--redis-listen" in args else "127.0.0.1:6380") in sec
    assert "server redis 127.0.0.1:6390 ssl verify required ca-file %s" % pki.ca in sec
    assert ("sni str(%s) check-sni %s" % (SNI, SNI) in sec) == ("--redis-sni" in args)
    assert ("crt %s" % pki.client_pem in sec) == ("--redis-cert" in args)


@pytest.mark.parametrize("bad, why", [
    (["--redis-tls", "127.0.0.1:6390"], "redis_tls.ca_file"),
    (["--redis-tls", "127.0.0.1:6390", "--redis-ca", "ca.pem"], "redis_tls.ca_file"),
    (["--redis-tls", "127.0.0.1:6390", "--redis-ca", "/x/ca.pem", "--redis-listen",
      "10.1.2.3:6380"], "loopback"),
    (["--redis-tls", "nowhere", "--redis-ca", "/x/ca.pem"], "redis_tls.server"),
    (["--redis-ca", "/x/ca.pem"], "redis_tls.server"),
    (["--redis-tls", "127.0.0.1:6390", "--redis-ca", "/x/ca.pem", "--redis-sni", "a b"],
     "redis_tls.sni"),
], ids=["no-ca", "relative-ca", "public-listen", "bad-server", "ca-alone", "bad-sni"])
def test_render_redis_tls_refuses_bad_options(tmp_path, bad, why):
    p = render(tmp_path / "out", *(BASE + bad))
    assert p.returncode == 2, p.stdout.decode()
    assert why in p.stdout.decode(), p.stdout.decode()
    assert not (tmp_path / "out" / "haproxy.cfg").exists()
