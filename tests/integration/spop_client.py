"""spop_client.py - a small pure-Python SPOP 2.0 client, as HAProxy speaks it.

Used by the integration tests to talk to stickyd directly (no HAProxy in the
way): HAPROXY-HELLO, NOTIFY with typed args, ACK decoded into a dict of
variable name -> value. Standard library only.

    with SpopClient("127.0.0.1", port) as c:
        c.hello()
        vars = c.notify("sticky-assign", {"backend": "ws", "sid": None,
                                          "src": ipaddress.ip_address("10.0.0.1")})
        vars["server"], vars["action"]

Python values map to SPOP types: None -> NULL, bool -> BOOL, int -> INT64
(wrap in Int32/Uint32/Uint64 for the others), str -> STRING, bytes -> BINARY,
ipaddress.IPv4Address / IPv6Address -> IPV4 / IPV6. ACK values come back the
same way (INT32/UINT32/INT64/UINT64 as plain ints).
"""

import ipaddress
import socket
import struct

# Frame types (SPOE.txt 3.2.4)
HAPROXY_HELLO = 1
HAPROXY_DISCONNECT = 2
NOTIFY = 3
AGENT_HELLO = 101
AGENT_DISCONNECT = 102
ACK = 103

FL_FIN = 0x1
FL_ABORT = 0x2

T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64 = 0, 1, 2, 3, 4, 5
T_IPV4, T_IPV6, T_STRING, T_BINARY = 6, 7, 8, 9

ACT_SET_VAR = 1
ACT_UNSET_VAR = 2

SCOPES = {0: "proc", 1: "sess", 2: "txn", 3: "req", 4: "res"}


class SpopError(Exception):
    """Protocol violation, or the agent disconnected (status, message set)."""

    def __init__(self, msg, status=None, message=None):
        super().__init__(msg)
        self.status = status
        self.message = message


class Int32(int):
    pass


class Uint32(int):
    pass


class Uint64(int):
    pass


# ---- varints (HAProxy's "peers" encoding) ---------------------------------

def varint_encode(v):
    if v < 0:
        v &= (1 << 64) - 1
    if v < 240:
        return bytes([v])
    out = bytearray([(v | 240) & 0xFF])
    v = (v - 240) >> 4
    while v >= 128:
        out.append((v | 128) & 0xFF)
        v = (v - 128) >> 7
    out.append(v)
    return bytes(out)


def varint_decode(buf, pos):
    """Return (value, new_pos); raise SpopError when truncated or too long."""
    if pos >= len(buf):
        raise SpopError("truncated varint")
    v = buf[pos]
    pos += 1
    if v < 240:
        return v, pos
    shift = 4
    for _ in range(9):
        if pos >= len(buf):
            raise SpopError("truncated varint")
        b = buf[pos]
        pos += 1
        v += b << shift
        shift += 7
        if b < 128:
            return v & ((1 << 64) - 1), pos
    raise SpopError("varint longer than 10 bytes")


# ---- typed data -----------------------------------------------------------

def _str(b):
    return varint_encode(len(b)) + b


def data_encode(v):
    if v is None:
        return bytes([T_NULL])
    if isinstance(v, bool):
        return bytes([T_BOOL | (0x10 if v else 0)])
    if isinstance(v, Int32):
        return bytes([T_INT32]) + varint_encode(int(v))
    if isinstance(v, Uint32):
        return bytes([T_UINT32]) + varint_encode(int(v))
    if isinstance(v, Uint64):
        return bytes([T_UINT64]) + varint_encode(int(v))
    if isinstance(v, int):
        return bytes([T_INT64]) + varint_encode(v)
    if isinstance(v, ipaddress.IPv4Address):
        return bytes([T_IPV4]) + v.packed
    if isinstance(v, ipaddress.IPv6Address):
        return bytes([T_IPV6]) + v.packed
    if isinstance(v, str):
        return bytes([T_STRING]) + _str(v.encode())
    if isinstance(v, (bytes, bytearray)):
        return bytes([T_BINARY]) + _str(bytes(v))
    raise TypeError("no SPOP type for %r" % (v,))


def _signed(v, bits):
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def data_decode(buf, pos):
    """Return (python value, new_pos)."""
    if pos >= len(buf):
        raise SpopError("truncated typed data")
    t = buf[pos] & 0x0F
    fl = buf[pos] & 0xF0
    pos += 1
    if t == T_NULL:
        return None, pos
    if t == T_BOOL:
        return bool(fl & 0x10), pos
    if t in (T_INT32, T_UINT32, T_INT64, T_UINT64):
        v, pos = varint_decode(buf, pos)
        if t == T_INT32:
            v = _signed(v & 0xFFFFFFFF, 32)
        elif t == T_INT64:
            v = _signed(v, 64)
        return v, pos
    if t == T_IPV4:
        if pos + 4 > len(buf):
            raise SpopError("truncated ipv4")
        return ipaddress.IPv4Address(bytes(buf[pos:pos + 4])), pos + 4
    if t == T_IPV6:
        if pos + 16 > len(buf):
            raise SpopError("truncated ipv6")
        return ipaddress.IPv6Address(bytes(buf[pos:pos + 16])), pos + 16
    if t in (T_STRING, T_BINARY):
        n, pos = varint_decode(buf, pos)
        if pos + n > len(buf):
            raise SpopError("truncated string")
        raw = bytes(buf[pos:pos + n])
        return (raw.decode("utf-8", "replace") if t == T_STRING else raw), pos + n
    raise SpopError("reserved data type %d" % t)


def kv_encode(items):
    out = bytearray()
    for k, v in items:
        out += _str(k.encode()) + data_encode(v)
    return bytes(out)


def kv_decode(buf):
    out = {}
    pos = 0
    while pos < len(buf):
        n, pos = varint_decode(buf, pos)
        if pos + n > len(buf):
            raise SpopError("truncated key")
        k = bytes(buf[pos:pos + n]).decode()
        pos += n
        out[k], pos = data_decode(buf, pos)
    return out


def _items(args):
    return list(args.items()) if isinstance(args, dict) else list(args)


# ---- frames ---------------------------------------------------------------

def frame_encode(ftype, payload, stream_id=0, frame_id=0, flags=FL_FIN):
    body = (bytes([ftype]) + struct.pack(">I", flags) + varint_encode(stream_id)
            + varint_encode(frame_id) + payload)
    return struct.pack(">I", len(body)) + body


def notify_payload(messages):
    """messages: list of (name, args) with args a dict or a list of pairs
    (a list allows duplicate or ordered names)."""
    out = bytearray()
    for name, args in messages:
        items = _items(args)
        out += _str(name.encode()) + bytes([len(items)]) + kv_encode(items)
    return bytes(out)


def actions_decode(payload):
    """ACK payload -> dict name -> value (SET-VAR; UNSET-VAR gives None).
    The scope is dropped; see actions_decode_full for it."""
    return {name: val for _, _, name, val in actions_decode_full(payload)}


def actions_decode_full(payload):
    """ACK payload -> list of (action type, scope name, var name, value)."""
    out = []
    pos = 0
    while pos < len(payload):
        if pos + 2 > len(payload):
            raise SpopError("truncated action")
        atype, nargs = payload[pos], payload[pos + 1]
        pos += 2
        if not ((atype == ACT_SET_VAR and nargs == 3) or (atype == ACT_UNSET_VAR and nargs == 2)):
            raise SpopError("unknown action %d/%d" % (atype, nargs))
        if pos >= len(payload):
            raise SpopError("truncated action scope")
        scope = payload[pos]
        n, pos = varint_decode(payload, pos + 1)
        if pos + n > len(payload):
            raise SpopError("truncated variable name")
        name = bytes(payload[pos:pos + n]).decode()
        pos += n
        val = None
        if atype == ACT_SET_VAR:
            val, pos = data_decode(payload, pos)
        out.append((atype, SCOPES.get(scope, str(scope)), name, val))
    return out


class SpopClient:
    """One SPOP connection, HAProxy's side. Not thread-safe; use one per thread."""

    def __init__(self, host, port, timeout=5.0, max_frame_size=16380, caps="pipelining"):
        self.max_frame_size = max_frame_size
        self.caps = caps
        self.agent = None  # the AGENT-HELLO as a dict, after hello()
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._next_fid = 1
        self._pending = {}  # frame_id -> vars, for ACKs read out of order

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    # -- raw I/O --
    def send_raw(self, data):
        self.sock.sendall(data)

    def _read_exact(self, n):
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SpopError("connection closed by the agent")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_frame(self):
        """Return (type, flags, stream_id, frame_id, payload). An
        AGENT-DISCONNECT raises SpopError with its status and message."""
        (n,) = struct.unpack(">I", self._read_exact(4))
        if n > self.max_frame_size:
            raise SpopError("agent frame of %d bytes exceeds %d" % (n, self.max_frame_size))
        body = self._read_exact(n)
        if len(body) < 7:
            raise SpopError("frame too short")
        ftype = body[0]
        (flags,) = struct.unpack(">I", body[1:5])
        sid, pos = varint_decode(body, 5)
        fid, pos = varint_decode(body, pos)
        payload = body[pos:]
        if ftype == AGENT_DISCONNECT:
            kv = kv_decode(payload)
            status, message = kv.get("status-code"), kv.get("message")
            raise SpopError("agent disconnected: %s (%s)" % (message, status), status, message)
        return ftype, flags, sid, fid, payload

    # -- handshake --
    def hello(self, healthcheck=False, engine_id="spop-client-py"):
        items = [("supported-versions", "2.0"),
                 ("max-frame-size", Uint32(self.max_frame_size)),
                 ("capabilities", self.caps),
                 ("engine-id", engine_id)]
        if healthcheck:
            items.append(("healthcheck", True))
        self.send_raw(frame_encode(HAPROXY_HELLO, kv_encode(items)))
        ftype, _, _, _, payload = self.read_frame()
        if ftype != AGENT_HELLO:
            raise SpopError("expected AGENT-HELLO, got frame type %d" % ftype)
        self.agent = kv_decode(payload)
        if "max-frame-size" in self.agent:
            self.max_frame_size = min(self.max_frame_size, self.agent["max-frame-size"])
        return self.agent

    def disconnect(self, status=0, message="normal"):
        items = [("status-code", Uint32(status)), ("message", message)]
        self.send_raw(frame_encode(HAPROXY_DISCONNECT, kv_encode(items)))

    # -- notify / ack --
    def send_notify(self, messages, stream_id=0, frame_id=None):
        """Send one NOTIFY; return its frame id (ids increase from 1)."""
        if frame_id is None:
            frame_id = self._next_fid
            self._next_fid += 1
        self.send_raw(frame_encode(NOTIFY, notify_payload(messages), stream_id, frame_id))
        return frame_id

    def recv_ack(self, frame_id=None):
        """Read the ACK for frame_id (or the next one); returns its vars dict.
        ACKs for other frames read meanwhile are kept for later calls."""
        if frame_id is not None and frame_id in self._pending:
            return self._pending.pop(frame_id)
        while True:
            ftype, _, _, fid, payload = self.read_frame()
            if ftype != ACK:
                raise SpopError("expected ACK, got frame type %d" % ftype)
            vars_ = actions_decode(payload)
            if frame_id is None or fid == frame_id:
                return vars_
            self._pending[fid] = vars_

    def notify(self, name, args, stream_id=0):
        """One message in one NOTIFY; wait for its ACK; return its vars."""
        fid = self.send_notify([(name, args)], stream_id)
        return self.recv_ack(fid)
