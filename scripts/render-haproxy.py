#!/usr/bin/python3
"""Render the reference HAProxy configuration for stickyd (haproxy.cfg + stickyd.spoe).

This script is the single source of the HAProxy side of stickyd: the committed
haproxy-conf/*.cfg are its renderings of haproxy-conf/demo-topology.json, and the
integration tests and `make run` render their own copies with their own ports.
Standard library only; runs under /usr/bin/python3.

    scripts/render-haproxy.py --spec haproxy-conf/demo-topology.json --out DIR
    scripts/render-haproxy.py --out DIR --bind 127.0.0.1:8080 \\
        --backend be_ws:ws1=127.0.0.1:9001,ws2=127.0.0.1:9002 \\
        --agent 127.0.0.1:12345 --syslog-udp 127.0.0.1:5514 \\
        --stats-socket /tmp/demo/haproxy.sock --no-cookie-secure --instance lb1
    # and Redis over TLS for the agent (redis.host 127.0.0.1, redis.port 6380):
    scripts/render-haproxy.py ... --redis-tls redis.example.net:6379 \
        --redis-ca /etc/haproxy/redis-ca.pem --redis-sni redis.example.net \
        [--redis-cert /etc/haproxy/redis-client.pem] [--redis-listen 127.0.0.1:6380]

Command-line options override the spec file. The output is checked with
`haproxy -c -f` unless --no-check is given; the exit status is 0 only when
HAProxy accepts it. Spec keys: see DEFAULTS below.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys

DEFAULTS = {
    # frontend address(es) clients connect to ("ADDR:PORT")
    "bind": "127.0.0.1:8080",
    # this HAProxy instance's name, sent to the agent; null: the host name
    "instance": None,
    # [{"name": "be_ws", "path_prefix": null,
    #   "servers": [{"name": "ws1", "addr": "127.0.0.1:9001", "weight": 100}]}]
    # The first backend is the default one; others are chosen by path prefix.
    # Optional per backend: "when_full": "refuse" (default: a 503 when the agent says
    # every server is at its fleet-wide cap, txn.sticky.full) or "queue" (HAProxy's
    # own queue: the servers' "maxconn" lines apply, "timeout_queue" bounds the wait,
    # then a 503); per server "maxconn" (rendered on the server line; the agent reads
    # it as the fleet-wide cap unless its limits config sets one).
    "backends": [],
    # stickyd SPOP listeners ("ADDR:PORT"), one HAProxy server line each
    "agents": ["127.0.0.1:12345"],
    # where tunnel-close lines go: {"transport": "udp"|"tcp"|"none", "addr": "ADDR:PORT"}
    "syslog": {"transport": "udp", "addr": "127.0.0.1:5514"},
    # runtime API socket the agent polls (absolute path)
    "stats_socket": "/run/haproxy/stickyd-admin.sock",
    # the affinity cookie; secure=false drops "Secure" for plain-HTTP demos
    "cookie": {"name": "stickysid", "secure": True},
    # HAProxy's own persistence cookie, used only when the agent gives no server:
    # each server line carries the server's tag (the one the session cookie binds),
    # computed from the agents' session secret; null secret_file: the server names
    "fallback_cookie": {"name": "stickysrv", "secret_file": None},
    # Socket.IO / Engine.IO variant: polling requests share the upgrade's affinity
    "socketio": False,
    # optional sample expression whose value the affinity follows instead of the
    # cookie (e.g. "req.hdr(x-user-id)"); null: the cookie alone
    "affinity_key": None,
    # SPOE "timeout processing": how long a request may wait for the agent
    "processing_timeout": "50ms",
    # health checks of the application servers and of the agents
    "health_path": "/healthz",
    "check_inter": "2s",
    "agent_check_inter": "2s",
    # global maxconn (HAProxy needs about 2 fds per connection: raise ulimit -n with it)
    "maxconn": 4096,
    # file names written into the output directory
    "cfg_name": "haproxy.cfg",
    "spoe_name": "stickyd.spoe",
    # the SPOE file's path as written in haproxy.cfg; null: the rendered file's
    # absolute path. (Absolute on purpose: with several backends, 2.6 resolves a
    # relative SPOE path against the working directory, whatever "default-path" says.)
    "spoe_path": None,
    # Redis over TLS, through this HAProxy (hiredis 0.14 has no TLS): null, or
    # {"server": "HOST:PORT" (Redis' TLS port), "ca_file": "/path" (verify against it),
    #  "sni": null | "name" (sent, and the certificate must carry it),
    #  "crt": null | "/path" (client certificate + key, PEM, for mTLS),
    #  "listen": "127.0.0.1:6380" (where the agent connects: loopback plaintext)}
    "redis_tls": None,
}

REDIS_TLS_DEFAULTS = {"server": None, "ca_file": None, "sni": None, "crt": None,
                      "listen": "127.0.0.1:6380"}

NAME_RE = re.compile(r"^[A-Za-z0-9._:-]{1,63}$")
ADDR_RE = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")
TIME_RE = re.compile(r"^\d+(us|ms|s|m|h|d)?$")
PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")


class SpecError(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise SpecError(msg)


def validate(spec):
    """Refuse anything that would render to a config HAProxy reads differently."""
    for k in spec:
        check(k in DEFAULTS, "unknown spec key %r" % k)
    binds = spec["bind"] if isinstance(spec["bind"], list) else [spec["bind"]]
    for b in binds:
        check(isinstance(b, str) and ADDR_RE.match(b), "bad bind address %r" % (b,))
    if spec["instance"] is not None:
        check(isinstance(spec["instance"], str) and NAME_RE.match(spec["instance"]),
              "instance must be 1..63 of A-Z a-z 0-9 . _ : -")
    check(isinstance(spec["backends"], list) and spec["backends"], "at least one backend")
    seen = set()
    for i, be in enumerate(spec["backends"]):
        check(NAME_RE.match(be.get("name", "")), "backend %d: bad name" % i)
        check(be["name"] not in seen, "duplicate backend %s" % be["name"])
        seen.add(be["name"])
        pp = be.get("path_prefix")
        check(pp is None or (isinstance(pp, str) and PATH_RE.match(pp)),
              "backend %s: bad path_prefix" % be["name"])
        check(i == 0 or pp, "backend %s: only the first backend may omit path_prefix"
              % be["name"])
        srvs = be.get("servers", [])
        check(srvs, "backend %s: no servers" % be["name"])
        names = set()
        for s in srvs:
            check(NAME_RE.match(s.get("name", "")), "backend %s: bad server name" % be["name"])
            check(s["name"] not in names, "backend %s: duplicate server %s"
                  % (be["name"], s["name"]))
            names.add(s["name"])
            check(ADDR_RE.match(s.get("addr", "")), "server %s: bad addr" % s["name"])
            w = s.get("weight", 100)
            check(isinstance(w, int) and 0 <= w <= 256, "server %s: weight 0..256" % s["name"])
            mc = s.get("maxconn")
            check(mc is None or (isinstance(mc, int) and 1 <= mc <= 10000000),
                  "server %s: maxconn 1..10000000" % s["name"])
        check(be.get("when_full", "refuse") in ("refuse", "queue"),
              "backend %s: when_full: refuse or queue" % be["name"])
        check(TIME_RE.match(str(be.get("timeout_queue", "5s"))),
              "backend %s: bad timeout_queue" % be["name"])
    check(isinstance(spec["agents"], list) and spec["agents"], "at least one agent")
    for a in spec["agents"]:
        check(ADDR_RE.match(a), "bad agent address %r" % a)
    sl = spec["syslog"]
    check(sl.get("transport") in ("udp", "tcp", "none"), "syslog.transport: udp, tcp or none")
    if sl["transport"] != "none":
        check(ADDR_RE.match(sl.get("addr", "")), "bad syslog.addr")
    check(isinstance(spec["stats_socket"], str) and spec["stats_socket"].startswith("/")
          and " " not in spec["stats_socket"], "stats_socket must be an absolute path")
    ck = spec["cookie"]
    check(re.match(r"^[A-Za-z0-9_-]{1,64}$", ck.get("name", "")), "bad cookie.name")
    check(isinstance(ck.get("secure"), bool), "cookie.secure must be true or false")
    fc = spec["fallback_cookie"]
    check(re.match(r"^[A-Za-z0-9_-]{1,64}$", fc.get("name", "")) and fc["name"] != ck["name"],
          "bad fallback_cookie.name")
    check(fc.get("secret_file") is None or isinstance(fc["secret_file"], str),
          "fallback_cookie.secret_file: a path or null")
    check(isinstance(spec["socketio"], bool), "socketio must be true or false")
    ak = spec["affinity_key"]
    check(ak is None or (isinstance(ak, str) and re.match(r"^[A-Za-z0-9_.,()-]+$", ak)),
          "affinity_key: one sample expression without spaces")
    for k in ("processing_timeout", "check_inter", "agent_check_inter"):
        check(TIME_RE.match(str(spec[k])), "bad duration %s=%r" % (k, spec[k]))
    check(PATH_RE.match(spec["health_path"]), "bad health_path")
    check(isinstance(spec["maxconn"], int) and 1 <= spec["maxconn"] <= 10000000, "bad maxconn")
    for k in ("cfg_name", "spoe_name"):
        check(re.match(r"^[A-Za-z0-9._-]+$", spec[k]), "bad file name %s" % k)
    check(spec["spoe_path"] is None or (isinstance(spec["spoe_path"], str)
          and PATH_RE.match(spec["spoe_path"])), "spoe_path must be an absolute path")
    rt = spec["redis_tls"]
    if rt is not None:
        check(isinstance(rt, dict), "redis_tls: an object or null")
        for k in rt:
            check(k in REDIS_TLS_DEFAULTS, "unknown redis_tls key %r" % k)
        check(isinstance(rt.get("server"), str) and ADDR_RE.match(rt["server"]),
              "redis_tls.server: Redis' TLS address HOST:PORT")
        check(isinstance(rt.get("ca_file"), str) and PATH_RE.match(rt["ca_file"]),
              "redis_tls.ca_file: an absolute path (the CA that signed Redis' certificate)")
        check(rt.get("sni") is None or (isinstance(rt["sni"], str)
              and re.match(r"^[A-Za-z0-9.-]{1,253}$", rt["sni"])),
              "redis_tls.sni: a host name or null")
        check(rt.get("crt") is None or (isinstance(rt["crt"], str) and PATH_RE.match(rt["crt"])),
              "redis_tls.crt: an absolute path or null")
        lst = rt.get("listen", REDIS_TLS_DEFAULTS["listen"])
        check(isinstance(lst, str) and ADDR_RE.match(lst)
              and (lst.startswith("127.") or lst.startswith("[::1]:")),
              "redis_tls.listen: a loopback ADDR:PORT (the agent's hop is plaintext)")
        binds = spec["bind"] if isinstance(spec["bind"], list) else [spec["bind"]]
        check(lst not in binds, "redis_tls.listen must differ from bind")


def inst_sample(spec):
    """The SPOE sample that names this instance: a constant, or the host name."""
    return "str(%s)" % spec["instance"] if spec["instance"] else "hostname"


def render_spoe(spec):
    inst = inst_sample(spec)
    ck = spec["cookie"]["name"]
    fck = spec["fallback_cookie"]["name"]
    key = ""
    if spec["affinity_key"]:
        key = ("\n    # key: the affinity follows this value (a user, a room), not the cookie."
               "\n    args key=%s" % spec["affinity_key"])
    return """\
# stickyd.spoe - the SPOE engine "stickyd": how HAProxy talks SPOP to the agent.
# Rendered by scripts/render-haproxy.py; edit the script, not this file.
# Loads unchanged on HAProxy 2.6 and 3.x (see the notes on each line).

[stickyd]
spoe-agent stickyd-agent
    # Messages are sent only by explicit "send-spoe-group" rules in haproxy.cfg
    # (no "event" lines), so the rules decide exactly which requests pay a round trip.
    groups sticky-assign-grp sticky-established-grp

    # Variables the agent sets come back as txn.sticky.<name>: server, sid, set_cookie,
    # action (hit|new|repin|fallback|none|full), draining, reason, full (1: every server
    # at its fleet-wide cap).
    option var-prefix sticky
    # On a timeout or SPOP error HAProxy sets txn.sticky.error (1 = timeout,
    # 256+N = SPOP status N) and the request goes on with normal balancing.
    option set-on-error error
    # An error on sticky-assign must not silence sticky-established for the same
    # transaction (by default an error disables the SPOE for the whole transaction).
    option continue-on-error
    # Let the agent set exactly these names, even if a config does not read them.
    register-var-names server sid set_cookie action draining reason counted srvtag full

    # 2.6: asynchronous mode lets an ACK arrive on another connection; stickyd
    # answers on the connection it was asked on. 3.1+ removed async: ignored there.
    no option async

    # 2.6 warns when these are missing; 3.1+ parses and ignores them.
    timeout hello 1s
    # Shorter than the agent's idle_timeout (60s), so HAProxy closes idle links first.
    timeout idle 30s
    # The whole budget of one decision (queue + NOTIFY + ACK). Past it the request
    # is balanced normally: a slow or dead agent never blocks traffic.
    timeout processing {pt}

    # The backend holding the agents (mode tcp here; 3.1+ turns it into mode spop).
    use-backend stickyd_agents

spoe-message sticky-assign
    # backend: the backend being routed. Not be_name: HAProxy (2.6 and 3.x alike)
    # validates "http-request send-spoe-group" args as if in a frontend, where
    # be_name is refused, so the backend copies its name into txn.stickyd_backend
    # first. sid: the affinity cookie, if any; inst: this HAProxy; uid: the stream's
    # unique-id, also in the close log line; src: the client address; upgrade: the
    # Upgrade header ("websocket"; absent on a Socket.IO polling request): the agent
    # then counts the tunnel open on the server it picks. srvck: HAProxy's own
    # fallback cookie, so the agent can tell when it must be rewritten (srvtag).
    args backend=var(txn.stickyd_backend) sid=req.cook({ck}) inst={inst} uid=unique-id src=src upgrade=req.hdr(upgrade) srvck=req.cook({fck}){key}

spoe-message sticky-established
    # Sent on a 101 whose server is not the one the agent picked (a retry or
    # redispatch moved it, or the agent gave no answer): the agent counts the tunnel
    # on <server> (moving the count sticky-assign made) and corrects the pin. It is
    # counted live until the close log line with the same uid.
    args backend=be_name server=srv_name sid=var(txn.sticky.sid) uid=unique-id inst={inst} status=status

spoe-group sticky-assign-grp
    messages sticky-assign

spoe-group sticky-established-grp
    messages sticky-established
""".format(pt=spec["processing_timeout"], ck=ck, fck=fck, inst=inst, key=key)


def render_cfg(spec):
    L = []
    add = L.append
    ck = spec["cookie"]
    sio = spec["socketio"]
    inst = spec["instance"]
    binds = spec["bind"] if isinstance(spec["bind"], list) else [spec["bind"]]
    add("# %s - reference HAProxy configuration for stickyd%s."
        % (spec["cfg_name"], " (Socket.IO / Engine.IO variant)" if sio else ""))
    add("# Rendered by scripts/render-haproxy.py; edit the script or the spec, not this file.")
    add("#")
    add("# Loads unchanged on HAProxy 2.6 (Debian 12) and 3.x. What differs on 3.x:")
    add("#  - 3.1+ rewrote the SPOE: the agent backend becomes \"mode spop\" (a \"mode tcp\"")
    add("#    backend used by an engine is converted; an explicit \"mode spop\" would break")
    add("#    2.6); \"timeout hello|idle\", \"option async\", \"maxconnrate\", \"maxerrrate\",")
    add("#    \"max-waiting-frames\" and \"option send-frag-payload\" are parsed and ignored;")
    add("#    no async mode, no fragmentation. \"option spop-check\" stays.")
    add("#  - 3.1+ has log-profiles: an access log can then share the frontend with the")
    add("#    close-line format below (on 2.6 one log-format serves every target).")
    add("#  - On both, send-spoe-group args are validated as frontend samples, so")
    add("#    be_name cannot be an arg of sticky-assign: the backend passes its name in")
    add("#    txn.stickyd_backend.")
    add("")
    add("global")
    add("    # The agent reads server states and weights here (show stat / show servers")
    add("    # state) and the operator tools drain/maint through it; expose-fd lets a reload")
    add("    # (-x <socket> -sf <pid>) take the listeners over without dropping connections.")
    add("    stats socket %s mode 600 level admin expose-fd listeners" % spec["stats_socket"])
    add("    stats timeout 30s")
    add("    # Each WebSocket holds two fds (client + server) for its whole life.")
    add("    maxconn %d" % spec["maxconn"])
    add("    # A reload must not leave old processes around forever holding tunnels.")
    add("    hard-stop-after 1h")
    tr = spec["syslog"]["transport"]
    if tr == "tcp":
        add("")
        add("# Tunnel-close lines over TCP: the ring buffers them and a server line forwards")
        add("# them octet-counted (RFC 6587), surviving agent restarts (lines wait in the ring).")
        add("ring stickyd_close")
        add("    description \"tunnel-close lines for stickyd\"")
        add("    format rfc5424")
        add("    maxlen 8192")
        add("    size 1048576")
        add("    timeout connect 1s")
        add("    timeout server 10s")
        add("    # log-proto octet-count: \"<len> <msg>\" framing; the default (legacy) is")
        add("    # newline-terminated, which stickyd accepts as well.")
        add("    server stickyd %s log-proto octet-count" % spec["syslog"]["addr"])
    add("")
    add("defaults")
    add("    mode http")
    add("    timeout connect 5s")
    add("    timeout client 30s")
    add("    timeout server 30s")
    add("    timeout http-request 10s")
    add("    timeout http-keep-alive 10s")
    add("    # Once upgraded, a WebSocket is a tunnel: idle up to an hour (clients ping).")
    add("    timeout tunnel 1h")
    add("    # Half-closed tunnels are reaped quickly instead of lingering for an hour.")
    add("    timeout client-fin 30s")
    add("    timeout server-fin 30s")
    add("    # If the chosen server refuses the connection, retry once elsewhere: the agent")
    add("    # learns the new server from sticky-established.")
    add("    retries 2")
    add("    option redispatch")
    add("    # A connection that sends nothing (port probes, health checkers) is not a")
    add("    # request: no log line, so no noise on the agent's close-line listener.")
    add("    option dontlognull")
    add("")
    add("frontend fe_ws")
    for b in binds:
        add("    bind %s" % b)
    add("    # Each stream's id: sent with sticky-assign and sticky-established and logged at")
    add("    # close, so the agent can pair the close with the open. No spaces (the log line")
    add("    # is space separated); the instance prefix keeps ids unique across HAProxies.")
    add("    unique-id-format %s-%%{+X}o%%ci:%%cp_%%fi:%%fp_%%Ts_%%rt:%%pid"
        % (inst if inst else "%H"))
    add("")
    add("    # WebSocket upgrade: HTTP/1.1 \"Upgrade: websocket\" + \"Connection: upgrade\"")
    add("    # (Connection is a list: hdr() matches each element). An HTTP/2 extended")
    add("    # CONNECT (RFC 8441, :protocol websocket) is turned by HAProxy's h2 mux into this")
    add("    # same GET + Upgrade + Connection form, so one rule covers both.")
    add("    # Nothing is keyed on Sec-WebSocket-Key (random per attempt).")
    add("    acl ws_upgrade req.hdr(upgrade) -i websocket")
    add("    acl conn_upgrade req.hdr(connection) -i upgrade")
    add("")
    add("    # Tunnel-close lines for the agent: one per WebSocket stream, emitted when it")
    add("    # ends. The format carries nothing a client controls (no URL, no headers), so")
    add("    # no one can forge a close line; keep your access log on another frontend or,")
    add("    # on 3.1+, in a log-profile. Other requests are not logged here at all.")
    if tr == "udp":
        add("    # UDP syslog (one datagram per line). For TCP delivery render with")
        add("    # --syslog-tcp: \"log ring@stickyd_close ...\" and a ring section.")
        add("    log %s len 8192 local0 info" % spec["syslog"]["addr"])
    elif tr == "tcp":
        add("    # Through the ring section above (TCP, octet-counted).")
        add("    log ring@stickyd_close len 8192 local0 info")
    if tr != "none":
        add("    log-format \"stickyd: uid=%ID be=%b srv=%s st=%ST sid=%[var(txn.sticky.sid)]\"")
        add("    http-request set-log-level silent unless ws_upgrade conn_upgrade")
    else:
        add("    # (rendered without a close-line target: the agent's live counts then rely")
        add("    # on its periodic resync from the runtime API)")
    add("")
    for be in spec["backends"][1:]:
        add("    use_backend %s if { path_beg %s }" % (be["name"], be["path_prefix"]))
    add("    default_backend %s" % spec["backends"][0]["name"])
    for be in spec["backends"]:
        add("")
        render_backend(add, spec, be)
    add("")
    add("# The stickyd agents. mode tcp is what 2.6 needs; 3.1+ converts a tcp backend")
    add("# used by an SPOE engine to \"mode spop\" itself, so this loads on both.")
    add("backend stickyd_agents")
    add("    mode tcp")
    add("    balance roundrobin")
    add("    # Health check = a real SPOP HELLO handshake (the agent answers the")
    add("    # \"healthcheck\" capability with AGENT-HELLO and closes).")
    add("    option spop-check")
    add("    timeout connect 1s")
    add("    # Longer than the SPOE idle timeout, so idle SPOP links are closed by SPOE.")
    add("    timeout server 3m")
    for i, a in enumerate(spec["agents"], 1):
        add("    server agent%d %s check inter %s rise 1 fall 2"
            % (i, a, spec["agent_check_inter"]))
    if spec["redis_tls"] is not None:
        add("")
        render_redis_tls(add, dict(REDIS_TLS_DEFAULTS, **spec["redis_tls"]))
    return "\n".join(L) + "\n"


def render_redis_tls(add, rt):
    """The listen section that gives the agent (and stickyctl) Redis over TLS."""
    add("# Redis over TLS for the agent and stickyctl: hiredis 0.14 speaks plaintext only,")
    add("# so they connect here (redis.host/redis.port = this bind) and HAProxy carries the")
    add("# bytes to Redis over TLS, verifying its certificate. The one plaintext hop is")
    add("# agent -> this bind, on loopback: keep it on 127.0.0.1 (or ::1), never on an")
    add("# interface other hosts reach. AUTH still goes to Redis itself (redis.password).")
    add("listen redis_tls")
    add("    mode tcp")
    add("    bind %s" % rt["listen"])
    add("    timeout connect 2s")
    add("    # No retries here: each waits a 1 s turnaround, while the agent has its own")
    add("    # backoff and wants a failure (e.g. a refused client certificate) at once.")
    add("    retries 0")
    add("    # The agent's connections live for days and its pub/sub one can be quiet: its own")
    add("    # deadlines and watchdog catch a dead Redis; these only reap abandoned links.")
    add("    timeout client 24h")
    add("    timeout server 24h")
    add("    # A failed check (here: the TLS handshake, e.g. an unknown CA) marks the server")
    add("    # DOWN and HAProxy says why in its log; the agent then sees closed connections.")
    opts = ["ssl", "verify required", "ca-file %s" % rt["ca_file"]]
    if rt["sni"]:
        # The name is sent and, with verify required, checked against the certificate.
        opts += ["sni str(%s)" % rt["sni"], "check-sni %s" % rt["sni"]]
    if rt["crt"]:
        opts.append("crt %s" % rt["crt"])
    add("    server redis %s %s check inter 2s rise 1 fall 1" % (rt["server"], " ".join(opts)))


def server_tag(secret, backend, server):
    """A server's tag as text, as agent/sid.h defines it (`stickyd --server-cookie
    BACKEND/SERVER` prints the same; a test checks that they agree)."""
    mac = hmac.new(secret, b"stickyd-srv-v1\x00" + backend.encode() + b"\x00" + server.encode(),
                   hashlib.sha256).digest()[:4]
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def read_secret(path):
    """The session secret file, as the agent reads it (one trailing newline dropped)."""
    with open(path, "rb") as f:
        data = f.read()
    return data[:-1] if data.endswith(b"\n") else data


def render_backend(add, spec, be):
    ck = spec["cookie"]
    sio = spec["socketio"]
    add("backend %s" % be["name"])
    add("    # New sessions the agent does not place (agent down, Redis down and no")
    add("    # fallback, or a non-sticky request) go to the server with the fewest")
    add("    # connections on this HAProxy.")
    add("    balance leastconn")
    add("    # The engine lives in the backend: each backend asks about its own servers.")
    add("    filter spoe engine stickyd config %s" % spec["spoe_path"])
    add("    acl ws_upgrade req.hdr(upgrade) -i websocket")
    add("    acl conn_upgrade req.hdr(connection) -i upgrade")
    if sio:
        add("    acl sio_path path_beg /socket.io/")
        add("    acl sio_poll url_param(transport) -m str polling")
        add("    # Engine.IO long-polling requests and the later upgrade of the same client ask")
        add("    # the agent alike, so they share one affinity (the cookie, set on the first")
        add("    # polling response, is sent with every later request and with the upgrade).")
        add("    http-request set-var(txn.stickyd_backend) be_name"
            " if sio_path sio_poll || ws_upgrade conn_upgrade")
        add("    http-request send-spoe-group stickyd sticky-assign-grp"
            " if sio_path sio_poll || ws_upgrade conn_upgrade")
    else:
        add("    # Ask the agent only for WebSocket upgrades (the message reads the backend")
        add("    # name from this variable: see stickyd.spoe).")
        add("    http-request set-var(txn.stickyd_backend) be_name if ws_upgrade conn_upgrade")
        add("    http-request send-spoe-group stickyd sticky-assign-grp if ws_upgrade conn_upgrade")
    if be.get("when_full", "refuse") == "refuse":
        add("    # Every usable server is at its fleet-wide cap (stickyd's limits.<backend>.")
        add("    # maxconn, or the servers' maxconn): a clean 503 now, never a hang or an")
        add("    # overloaded server. The agent sets txn.sticky.full only then.")
        add("    http-request return status 503 content-type text/plain"
            " string \"every server is full, retry later\" hdr Retry-After 5"
            " if { var(txn.sticky.full) -m int 1 }")
    else:
        add("    # when_full queue: the agent names a server even when every one is at its")
        add("    # cap (txn.sticky.full = 1); the server's maxconn makes HAProxy queue the")
        add("    # request, and past \"timeout queue\" the client gets a 503.")
        add("    timeout queue %s" % be.get("timeout_queue", "5s"))
    add("    # The agent's choice, by name (use-server takes a log-format string since 2.6).")
    add("    # An unknown name or a server that is DOWN/MAINT is skipped and leastconn")
    add("    # decides; a DRAIN server is still used, so existing sessions keep it.")
    add("    use-server %[var(txn.sticky.server)] if { var(txn.sticky.server) -m found }")
    add("")
    add("    # The tunnel is up on another server than the agent's choice (after a retry or")
    add("    # redispatch), or the agent chose none: tell it which server really took it.")
    add("    # When HAProxy used the agent's choice, sticky-assign already counted the")
    add("    # tunnel, and this second round trip is skipped. HTTP/2 extended CONNECT's 200")
    add("    # is seen here as 101 as well.")
    add("    http-response send-spoe-group stickyd sticky-established-grp if { status 101 } "
        "!{ srv_name,strcmp(txn.sticky.server) eq 0 }")
    attrs = "Path=/; HttpOnly"
    if ck["secure"]:
        attrs += "; Secure; SameSite=None"
        why = "Secure + SameSite=None: sent by browsers on cross-site WebSocket upgrades."
    else:
        attrs += "; SameSite=Lax"
        why = "Plain-HTTP variant (no Secure): for local demos and tests only."
    add("    # A new or re-signed session id, when the agent asks for it. add-header, not")
    add("    # set-header: the application's own Set-Cookie headers must survive.")
    add("    # %s" % why)
    add("    http-response add-header Set-Cookie \"%s=%%[var(txn.sticky.sid)]; %s\""
        " if { var(txn.sticky.set_cookie) -m int 1 } { var(txn.sticky.sid) -m found }"
        % (ck["name"], attrs))
    add("")
    add("    option httpchk")
    add("    # HTTP/1.1 with a Host header: many WebSocket servers refuse HTTP/1.0.")
    add("    http-check send meth GET uri %s ver HTTP/1.1 hdr Host localhost"
        % spec["health_path"])
    add("")
    fc = spec["fallback_cookie"]
    secret = read_secret(fc["secret_file"]) if fc["secret_file"] else None
    add("    # Fallback persistence, for when the agent gives no server (down, silent past")
    add("    # the SPOE timeout, or answering none): HAProxy's own cookie names the server")
    add("    # by the opaque tag the session cookie carries (`stickyd --server-cookie")
    add("    # BACKEND/SERVER` prints it), so every load balancer routes a returning")
    add("    # client, and a Socket.IO handshake's polling requests, to one server. use-server")
    add("    # is evaluated before cookie persistence and wins over it: the cookie never")
    add("    # overrides an answer of the agent, and HAProxy re-inserts it whenever it names")
    add("    # another server than the one used, whoever picked that one.")
    if secret is None:
        add("    # (Rendered without the agents' secret: the values below are the server names;")
        add("    # render with fallback_cookie.secret_file to hide them behind the tags.)")
    add("    # preserve: the Set-Cookie of the rule below is left alone (insert mode would")
    add("    # strip a response's cookie of the same name).")
    add("    cookie %s insert indirect preserve nocache httponly%s" % (
        fc["name"], " secure attr \"SameSite=None\"" if ck["secure"] else " attr \"SameSite=Lax\""))
    add("    # HAProxy inserts its cookie only where it chose the server itself; where the")
    add("    # agent chose (use-server), the agent says when the client's value is stale.")
    add("    http-response add-header Set-Cookie \"%s=%%[var(txn.sticky.srvtag)]; %s\""
        " if { var(txn.sticky.srvtag) -m found }" % (fc["name"], attrs))
    add("    default-server check inter %s rise 1 fall 2" % spec["check_inter"])
    for s in be["servers"]:
        tag = server_tag(secret, be["name"], s["name"]) if secret else s["name"]
        mc = " maxconn %d" % s["maxconn"] if s.get("maxconn") else ""
        add("    server %s %s weight %d%s cookie %s" % (s["name"], s["addr"], s.get("weight", 100),
                                                      mc, tag))


def parse_backend_arg(text):
    """"be_ws[@/prefix]:ws1=127.0.0.1:9001[/w],ws2=..." -> backend dict."""
    name, sep, rest = text.partition(":")
    if not sep:
        raise SpecError("--backend NAME[@/prefix]:SRV=ADDR:PORT[/WEIGHT],...")
    prefix = None
    if "@" in name:
        name, prefix = name.split("@", 1)
    servers = []
    for item in rest.split(","):
        sname, eq, addr = item.partition("=")
        if not eq:
            raise SpecError("bad server %r in --backend" % item)
        weight = 100
        if "/" in addr:
            addr, w = addr.rsplit("/", 1)
            weight = int(w)
        servers.append({"name": sname, "addr": addr, "weight": weight})
    return {"name": name, "path_prefix": prefix, "servers": servers}


def build_spec(args):
    spec = json.loads(json.dumps(DEFAULTS))
    if args.spec:
        with open(args.spec, encoding="utf-8") as f:
            user = json.load(f)
        user.pop("_comment", None)
        for k, v in user.items():
            if k not in DEFAULTS:
                raise SpecError("%s: unknown key %r" % (args.spec, k))
            if isinstance(DEFAULTS[k], dict) and isinstance(v, dict):
                spec[k].update(v)
            else:
                spec[k] = v
    if args.bind:
        spec["bind"] = args.bind if len(args.bind) > 1 else args.bind[0]
    if args.instance is not None:
        spec["instance"] = args.instance or None
    if args.backend:
        spec["backends"] = [parse_backend_arg(b) for b in args.backend]
    if args.agent:
        spec["agents"] = args.agent
    if args.syslog_udp:
        spec["syslog"] = {"transport": "udp", "addr": args.syslog_udp}
    if args.syslog_tcp:
        spec["syslog"] = {"transport": "tcp", "addr": args.syslog_tcp}
    if args.no_syslog:
        spec["syslog"] = {"transport": "none"}
    if args.stats_socket:
        spec["stats_socket"] = args.stats_socket
    if args.cookie_name:
        spec["cookie"]["name"] = args.cookie_name
    if args.cookie_secure is not None:
        spec["cookie"]["secure"] = args.cookie_secure
    if args.secret_file:
        spec["fallback_cookie"]["secret_file"] = args.secret_file
    if args.socketio:
        spec["socketio"] = True
    for be in spec["backends"]:
        if args.when_full:
            be["when_full"] = args.when_full
        for srv in be.get("servers", []) if args.server_maxconn else []:
            srv["maxconn"] = args.server_maxconn
    for k in ("affinity_key", "processing_timeout", "check_inter", "agent_check_inter",
              "cfg_name", "spoe_name", "spoe_path"):
        v = getattr(args, k)
        if v is not None:
            spec[k] = v
    tls = {"server": args.redis_tls, "ca_file": args.redis_ca, "sni": args.redis_sni,
           "crt": args.redis_cert, "listen": args.redis_listen}
    tls = {k: v for k, v in tls.items() if v is not None}
    if tls:
        spec["redis_tls"] = dict(spec["redis_tls"] or {}, **tls)
    validate(spec)
    return spec


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def haproxy_check(haproxy, cfg_path):
    """Run `haproxy -c`; returns (ok, output)."""
    p = subprocess.run([haproxy, "-c", "-f", cfg_path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    return p.returncode == 0, p.stdout.decode("utf-8", "replace")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", help="JSON spec file (keys as in DEFAULTS)")
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--bind", action="append", help="frontend ADDR:PORT (repeatable)")
    ap.add_argument("--instance", help="instance name sent to the agent ('' = host name)")
    ap.add_argument("--backend", action="append",
                    help="NAME[@/prefix]:SRV=ADDR:PORT[/WEIGHT],... (repeatable; first = default)")
    ap.add_argument("--agent", action="append", help="stickyd SPOP ADDR:PORT (repeatable)")
    ap.add_argument("--syslog-udp", help="close lines over UDP syslog to ADDR:PORT")
    ap.add_argument("--syslog-tcp", help="close lines over a TCP ring to ADDR:PORT")
    ap.add_argument("--no-syslog", action="store_true", help="no close lines")
    ap.add_argument("--stats-socket", help="runtime API socket path (absolute)")
    ap.add_argument("--cookie-name")
    ap.add_argument("--cookie-secure", dest="cookie_secure", action="store_true", default=None)
    ap.add_argument("--no-cookie-secure", dest="cookie_secure", action="store_false")
    ap.add_argument("--secret-file", help="the agents' session.secret_file: the fallback "
                    "cookie's values become the servers' tags")
    ap.add_argument("--socketio", action="store_true", help="Socket.IO polling variant")
    ap.add_argument("--when-full", choices=("refuse", "queue"),
                    help="every backend: a 503 when all servers are at their cap (refuse), "
                    "or HAProxy's own queue (queue)")
    ap.add_argument("--server-maxconn", type=int,
                    help="every server line: maxconn N (the agents' fleet-wide cap by default)")
    ap.add_argument("--affinity-key", help="sample expression the affinity follows")
    ap.add_argument("--processing-timeout")
    ap.add_argument("--check-inter")
    ap.add_argument("--agent-check-inter")
    ap.add_argument("--cfg-name", help="name of the haproxy config file written")
    ap.add_argument("--spoe-name", help="name of the SPOE file written")
    ap.add_argument("--spoe-path", help="SPOE path written in haproxy.cfg (default: the file)")
    ap.add_argument("--redis-tls", metavar="HOST:PORT",
                    help="render a listen section carrying the agent's Redis traffic to "
                    "HOST:PORT over TLS")
    ap.add_argument("--redis-ca", metavar="FILE", help="CA file Redis' certificate must "
                    "chain to (required with --redis-tls)")
    ap.add_argument("--redis-sni", metavar="NAME", help="SNI sent to Redis and checked "
                    "against its certificate")
    ap.add_argument("--redis-cert", metavar="FILE", help="client certificate + key (PEM) "
                    "for Redis' tls-auth-clients")
    ap.add_argument("--redis-listen", metavar="ADDR:PORT", help="loopback address the "
                    "agent connects to (default 127.0.0.1:6380)")
    ap.add_argument("--no-check", action="store_true", help="skip haproxy -c")
    ap.add_argument("--haproxy", default=os.environ.get("HAPROXY", "/usr/sbin/haproxy"))
    args = ap.parse_args(argv)
    try:
        spec = build_spec(args)
    except (SpecError, ValueError, OSError) as e:
        print("render-haproxy: %s" % e, file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    out_dir = os.path.abspath(args.out)
    cfg_path = os.path.join(out_dir, spec["cfg_name"])
    spoe_path = os.path.join(out_dir, spec["spoe_name"])
    installed = spec["spoe_path"]
    if installed is None:
        spec["spoe_path"] = spoe_path
    for path, text in ((cfg_path, render_cfg(spec)), (spoe_path, render_spoe(spec))):
        write_atomic(path, text)
    if not args.no_check:
        check_path = cfg_path
        if installed is not None and installed != spoe_path:
            # The config names its installed SPOE path; check a copy naming ours.
            spec["spoe_path"] = spoe_path
            check_path = cfg_path + ".check"
            write_atomic(check_path, render_cfg(spec))
        ok, out = haproxy_check(args.haproxy, check_path)
        if check_path != cfg_path:
            os.unlink(check_path)
        if not ok:
            sys.stderr.write(out)
            print("render-haproxy: %s rejected %s" % (args.haproxy, cfg_path), file=sys.stderr)
            return 1
        # Warnings are not fatal to HAProxy but are to us: the reference must be clean.
        if "[WARNING]" in out or "[ALERT]" in out:
            sys.stderr.write(out)
            print("render-haproxy: %s warns about %s" % (args.haproxy, cfg_path), file=sys.stderr)
            return 1
    print(cfg_path)
    print(spoe_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
