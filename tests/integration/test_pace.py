"""Loop pacing (agent/pace.c) against the real agent over real SPOP sockets.

build/bench/spop_bench plays HAProxy. In open loop at a high rate it sends what
HAProxy 3.1+ sends under load, a few frames per wakeup on their own clock, which is
when the agent should collect before each poll; at a low rate, or once the flood is
gone, it must not; and a peer with one frame in flight per connection, which a
wait can only slow down, must make it back off. spop_bench matches every ACK to its
NOTIFY (stream-id, frame-id), so "frames stay whole" is checked on the way.
"""
import subprocess

import pytest

import harness

SPOP_BENCH = harness.REPO / "build" / "bench" / "spop_bench"


@pytest.fixture
def agent(procs, stickyd_bin):
    if not SPOP_BENCH.exists():
        pytest.fail("%s is not built: run `make test`" % SPOP_BENCH)
    r = procs.redis()
    return procs.stickyd(redis_port=r.port, backends={"be": ["s1"]})


def bench(agent, *args):
    """Run spop_bench against the agent with the `ping` message; its key=value figures."""
    p = subprocess.run([str(SPOP_BENCH), "-H", harness.LOOPBACK, "-p", str(agent.port),
                        "-m", "ping", "-w", "0.2", "-q"] + list(args),
                       capture_output=True, text=True, timeout=60)
    figures = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    assert p.returncode == 0, (p.stdout, p.stderr)
    for k in ("errors", "unmatched", "disconnects", "lost"):
        assert figures[k] == "0", figures
    return figures


def test_low_rate_is_never_paced(agent):
    before = harness.agent_stats(agent)
    f = bench(agent, "-c", "4", "-d", "20", "-r", "1000", "-t", "1.5")
    after = harness.agent_stats(agent)
    assert int(f["acks"]) >= 1000
    assert after["notify"] - before["notify"] >= int(f["acks"])
    assert after["pace_on"] == 0, (f, after)


def test_open_loop_flood_is_paced_while_it_lasts(agent):
    # HAProxy's pattern: frames arrive on their own clock (50,000/s, in 100 us ticks
    # over four connections, a few per wakeup) whatever the agent does, so the
    # wait gathers bigger batches at the same rate and pacing stays on.
    f = bench(agent, "-c", "4", "-d", "64", "-r", "50000", "-t", "1.5")
    st = harness.agent_stats(agent)
    assert st["ack"] == st["notify"] and int(f["acks"]) >= 50000, (f, st)
    assert st["pace_on"] >= 1, ("no pacing at %s frames/s" % f["rate"], st)
    assert st["pace_holdoff"] == 0, st
    # The flood is over: the next samples see no frames and pacing stops.
    harness.wait_until(lambda: harness.agent_stats(agent)["pace_off"] ==
                       harness.agent_stats(agent)["pace_on"], timeout=5,
                       what="pacing off once the load is gone")


def test_latency_bound_peer_is_not_slowed(agent):
    # Six connections, one frame in flight on each: at most six frames per wakeup,
    # fewer than pace.h's 8, at far more than its 20,000 frames/s. Waiting cannot
    # batch more here (the peer waits for each ACK): the first sample after pacing
    # starts shows the rate fell, pacing backs off, and stays off for 5 s.
    bench(agent, "-c", "6", "-d", "1", "-t", "1.5")
    st = harness.agent_stats(agent)
    assert st["ack"] == st["notify"], st
    assert (st["pace_on"], st["pace_off"], st["pace_holdoff"]) == (1, 1, 1), st
