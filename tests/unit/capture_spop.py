#!/usr/bin/python3
"""capture_spop.py - capture real SPOP frames from /usr/sbin/haproxy.

Starts a tiny SPOP agent on 127.0.0.1 (free port), a haproxy in a temp dir
whose frontend offloads every request through SPOE to it (and whose SPOE
backend has `option spop-check`, for the health-check HELLO), sends one HTTP
request through, waits for haproxy's idle timeout to make it send a
HAPROXY-DISCONNECT, and prints every frame received as a C byte array.

The agent answers by hand-encoded frames (AGENT-HELLO, ACK, AGENT-DISCONNECT)
so haproxy proceeds. tests/unit/test_spop.c embeds the output; the test does
not run this script. Usage: /usr/bin/python3 tests/unit/capture_spop.py
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HAPROXY = "/usr/sbin/haproxy"


def varint(v):
    if v < 240:
        return bytes([v])
    out = [(v | 240) & 0xFF]
    v = (v - 240) >> 4
    while v >= 128:
        out.append((v | 128) & 0xFF)
        v = (v - 128) >> 7
    out.append(v)
    return bytes(out)


def s(b):
    return varint(len(b)) + b


def frame(ftype, sid, fid, payload):
    body = bytes([ftype]) + struct.pack(">I", 1) + varint(sid) + varint(fid) + payload
    return struct.pack(">I", len(body)) + body


def read_varint(b, i):
    v = b[i]
    i += 1
    if v < 240:
        return v, i
    shift = 4
    while True:
        c = b[i]
        i += 1
        v += c << shift
        shift += 7
        if c < 128:
            return v, i


def free_port():
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


captured = []  # (connection number, raw frame bytes including the prefix)
lock = threading.Lock()


def serve(conn, n):
    def recv_exact(k):
        buf = b""
        while len(buf) < k:
            chunk = conn.recv(k - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    try:
        while True:
            hdr = recv_exact(4)
            body = recv_exact(struct.unpack(">I", hdr)[0])
            with lock:
                captured.append((n, hdr + body))
            ftype = body[0]
            sid, i = read_varint(body, 5)
            fid, i = read_varint(body, i)
            if ftype == 1:  # HAPROXY-HELLO
                pl = (s(b"version") + b"\x08" + s(b"2.0") +
                      s(b"max-frame-size") + b"\x03" + varint(16380) +
                      s(b"capabilities") + b"\x08" + s(b""))
                conn.sendall(frame(101, 0, 0, pl))
            elif ftype == 3:  # NOTIFY: SET-VAR txn.sticky.server = "s1"
                act = b"\x01\x03\x02" + s(b"server") + b"\x08" + s(b"s1")
                conn.sendall(frame(103, sid, fid, act))
            elif ftype == 2:  # HAPROXY-DISCONNECT
                pl = s(b"status-code") + b"\x03" + varint(0) + s(b"message") + b"\x08" + s(b"")
                conn.sendall(frame(102, 0, 0, pl))
                return
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def main():
    tmp = tempfile.mkdtemp(prefix="spop-capture-")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    agent_port = lsock.getsockname()[1]
    fe_port = free_port()

    def acceptor():
        n = 0
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            n += 1
            threading.Thread(target=serve, args=(c, n), daemon=True).start()

    threading.Thread(target=acceptor, daemon=True).start()

    with open(os.path.join(tmp, "spoe.cfg"), "w") as f:
        f.write("""[e]
spoe-agent a
    messages m
    option var-prefix sticky
    timeout hello 2s
    timeout idle 1s
    timeout processing 2s
    use-backend spoe
spoe-message m
    args sid=str(abc) n=int(-5) big=int(1000) t=bool(1) ip=ipv4(10.1.2.3) ip6=ipv6(::1) src nothing=var(txn.none)
    event on-frontend-http-request
""")
    with open(os.path.join(tmp, "haproxy.cfg"), "w") as f:
        f.write(f"""global
    log stderr format raw local0 warning
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{fe_port}
    filter spoe engine e config {tmp}/spoe.cfg
    http-request return status 200 content-type text/plain lf-string "%[var(txn.sticky.server)]"
backend spoe
    mode tcp
    option spop-check
    server agent 127.0.0.1:{agent_port} check inter 10s
""")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", os.path.join(tmp, "haproxy.cfg")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        body = None
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{fe_port}/", timeout=3) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.1)
        print(f"/* HTTP answer through haproxy: {body!r} */", file=sys.stderr)
        time.sleep(2.5)  # timeout idle 1s: haproxy sends HAPROXY-DISCONNECT
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        lsock.close()
        shutil.rmtree(tmp, ignore_errors=True)

    names = {1: "HAPROXY-HELLO", 2: "HAPROXY-DISCONNECT", 3: "NOTIFY"}
    with lock:
        frames = list(captured)
    for n, raw in frames:
        print(f"/* connection {n}: {names.get(raw[4], raw[4])}, {len(raw)} bytes */")
        print("{")
        for i in range(0, len(raw), 12):
            print("    " + ", ".join(f"0x{b:02x}" for b in raw[i:i + 12]) + ",")
        print("}")
    return 0 if frames else 1


if __name__ == "__main__":
    sys.exit(main())
