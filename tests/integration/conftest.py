"""pytest fixtures for stickyd's integration tests (real redis-server, haproxy, stickyd).

    def test_x(procs):                      # a ProcGroup for this test
        r = procs.redis()                   # started redis-server, r.port, r.client()
        w = procs.ws_servers(3)             # ws1..ws3, started, w[0].port
        s = procs.stickyd(redis_port=r.port, backends={"be_ws": ["ws1"]})
        h = procs.haproxy(); h.render({...}); h.start()
        st = procs.stack(instances=2)       # everything wired together (harness.Stack)

Everything a test starts through `procs` is stopped when the test ends, pass or
fail; when a test fails, the tail of every process log is attached to its report.
Also: `redis_server` (a started Redis), `ws_backends` (three started WsServers),
`stack` (one load balancer: Redis + 3 servers + stickyd + HAProxy), `ws_pool`
(a harness.WsPool closed at teardown).

Environment: HAPROXY=/path/to/haproxy runs everything (render checks included)
against another HAProxy build, e.g. a 3.x one; STICKYD and REDIS_SERVER likewise.
tests/run-integration.sh does so for every HAProxy of the matrix; the version is in
the session header and in every failure's report.
"""
import functools
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@functools.lru_cache(maxsize=None)
def haproxy_version():
    """First line of `$HAPROXY -v`, e.g. "HAProxy version 3.2.0-e134140d2 2025/05/28 - ..."."""
    try:
        out = subprocess.run([harness.HAPROXY, "-v"], capture_output=True, text=True,
                             timeout=10).stdout
    except OSError as e:
        return "%s: %s" % (harness.HAPROXY, e)
    return (out.splitlines() or ["%s: no version" % harness.HAPROXY])[0]


def pytest_report_header(config):
    return "haproxy: %s (%s)" % (haproxy_version(), harness.HAPROXY)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call"):
        # A matrix run repeats the same test ids on each version: name it.
        rep.sections.insert(0, ("haproxy", "%s (%s)" % (haproxy_version(), harness.HAPROXY)))
        group = getattr(item, "_stickyd_procs", None)
        if group is not None:
            for name, text in group.logs():
                rep.sections.append(("log of %s" % name, text or "(empty)"))


@pytest.fixture
def procs(request, tmp_path):
    group = harness.ProcGroup(tmp_path)
    request.node._stickyd_procs = group
    yield group
    group.stop_all()


@pytest.fixture
def redis_server(procs):
    return procs.redis()


@pytest.fixture
def ws_backends(procs):
    return procs.ws_servers(3)


@pytest.fixture
def stack(procs):
    st = procs.stack(instances=1)
    st.wait_agents_up()
    st.wait_servers_up()
    return st


@pytest.fixture
def ws_pool():
    pool = harness.WsPool()
    yield pool
    pool.shutdown()


@pytest.fixture(scope="session")
def stickyd_bin():
    """Path of the built agent; a clear failure (not a skip) when it is missing."""
    if not harness.STICKYD.exists():
        pytest.fail("%s is not built: run `make` first" % harness.STICKYD)
    return harness.STICKYD
