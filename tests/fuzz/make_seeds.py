#!/usr/bin/python3
"""make_seeds.py - derive the fuzz seed corpora from the unit-test vectors.

One directory per target, tests/fuzz/seeds_<name>/:
- spop: every `static const uint8_t name[] = {...};` byte array of
  tests/unit/test_spop.c (the frames captured from HAProxy 2.6 and the literal
  ones): each frame, its payload alone, a few truncations and corruptions, and
  the frames back to back as one stream;
- slog, hapi, config: every C string literal of test_slog.c, test_hapi.c and
  test_config.c (the captured log lines, runtime-API replies and config files),
  plus the same framed as HAProxy's ring sends them / batched as hapi's refresh
  reads them;
- events: test_events.c's events, encoded here as protobuf bytes;
- cookie: valid "1" and "2" cookies signed with fuzz_cookie.c's secret (so the
  fuzzer starts past the MAC) and the records and states of test_model.c;
- reply: the Redis replies of test vectors for decide.lua, ledger.lua, states and
  resync (see fuzz_reply.c), in RESP2.
Files named crash-* in a corpus are regression inputs kept from fuzzing runs and
are never removed. Re-run after changing the vectors:
    /usr/bin/python3 tests/fuzz/make_seeds.py
"""
import base64
import hashlib
import hmac
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "unit", "test_spop.c")
UNIT = os.path.join(HERE, "..", "unit")


def arrays(text):
    out = {}
    for m in re.finditer(r"static const uint8_t (\w+)\[\] = \{(.*?)\};", text, re.S):
        body = re.sub(r"/\*.*?\*/", "", m.group(2), flags=re.S)
        vals = []
        for tok in re.findall(r"0x[0-9a-fA-F]+|'(?:\\.|[^'])'|\b\d+\b", body):
            if tok.startswith("'"):
                vals.append(ord(tok[1:-1].encode().decode("unicode_escape")))
            else:
                vals.append(int(tok, 0))
        out[m.group(1)] = bytes(vals)
    return out


def varint_len(b, i):
    if b[i] < 240:
        return 1
    n = 1
    while b[i + n] >= 128:
        n += 1
    return n + 1


def payload(frame):
    """The payload of a well-formed frame, None if the ids overrun it."""
    try:
        i = 4 + 1 + 4
        i += varint_len(frame, i)
        i += varint_len(frame, i)
    except IndexError:
        return None
    return frame[i:] if i <= len(frame) else None


def spop_seeds():
    with open(SRC) as f:
        arr = arrays(f.read())
    frames = {k: v for k, v in arr.items()
              if len(v) >= 11 and struct.unpack(">I", v[:4])[0] == len(v) - 4
              and payload(v) is not None}
    seeds = {}
    for name, fr in frames.items():
        seeds[f"frame_{name}"] = fr
        seeds[f"payload_{name}"] = payload(fr)
        seeds[f"trunc_{name}"] = fr[:len(fr) // 2]
        bad = bytearray(fr)
        bad[-1] ^= 0xff
        seeds[f"flip_last_{name}"] = bytes(bad)
    for name, v in arr.items():
        if name not in frames:
            seeds[f"bytes_{name}"] = v
    seeds["stream_all"] = b"".join(frames[k] for k in sorted(frames))
    seeds["too_big"] = b"\x00\x01\x00\x00\x03"
    seeds["too_short"] = b"\x00\x00\x00\x06\x03\x00\x00\x00\x01\x00"
    seeds["zero_len"] = b"\x00\x00\x00\x00"
    seeds["varint_max"] = bytes.fromhex("fff0fefefefefefefe0e")
    return seeds


def c_strings(path):
    """Every C string literal of a file, adjacent literals joined, escapes decoded."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"'(?:\\.|[^'\\])'", "''", text)  # char literals hold no quotes
    lit = r'"(?:\\.|[^"\\\n])*"'
    out = []
    for m in re.finditer(r"(?:%s\s*)+" % lit, text):
        parts = re.findall(lit, m.group(0))
        raw = "".join(p[1:-1] for p in parts)
        out.append(decode_c(raw))
    return out


def decode_c(raw):
    b = bytearray()
    i = 0
    simple = {"n": 10, "r": 13, "t": 9, "0": 0, "\\": 92, '"': 34, "'": 39, "a": 7,
              "b": 8, "f": 12, "v": 11, "e": 27}
    while i < len(raw):
        c = raw[i]
        if c != "\\":
            b += c.encode()
            i += 1
            continue
        n = raw[i + 1]
        if n == "x":
            j = i + 2
            while j < len(raw) and raw[j] in "0123456789abcdefABCDEF":
                j += 1
            b.append(int(raw[i + 2:j], 16) & 0xFF)
            i = j
        elif n in "01234567" and i + 2 < len(raw) and raw[i + 2] in "01234567":
            j = i + 1
            while j < len(raw) and j < i + 4 and raw[j] in "01234567":
                j += 1
            b.append(int(raw[i + 1:j], 8) & 0xFF)
            i = j
        else:
            b.append(simple.get(n, ord(n)))
            i += 2
    return bytes(b)


def named(prefix, items, minlen=1):
    out = {}
    for i, v in enumerate(items):
        if len(v) >= minlen and v not in out.values():
            out[f"{prefix}{i:03d}"] = v
    return out


def slog_seeds():
    lines = [v for v in c_strings(os.path.join(UNIT, "test_slog.c")) if len(v) > 2]
    seeds = named("line", lines)
    # HAProxy's ring over TCP: octet counting (RFC 6587 3.4.1), and newline framing
    seeds["octets_all"] = b"".join(b"%d %s" % (len(v), v) for v in lines if v)
    seeds["newline_all"] = b"".join(v.rstrip(b"\n") + b"\n" for v in lines)
    seeds["octets_short"] = b"12 stickyd: uid"
    seeds["octets_zero"] = b"0 x"
    seeds["octets_big"] = b"999999 x"
    return seeds


def hapi_seeds():
    strs = c_strings(os.path.join(UNIT, "test_hapi.c"))
    seeds = named("str", [v for v in strs if len(v) > 1])
    state = [v for v in strs if v.startswith(b"1\n# be_id")]
    stat = [v for v in strs if v.startswith(b"# pxname")]
    info = b"Name: HAProxy\nVersion: 2.6.12\nPid: 4242\nUptime_sec: 5\n\n"
    if state and stat:
        # the refresh batch: "show servers state;show stat;show info"
        seeds["batch"] = state[0] + stat[0] + info
        seeds["batch_cut"] = (state[0] + stat[0])[: len(state[0]) + len(stat[0]) // 2]
    seeds["info"] = info
    return seeds


def config_seeds():
    strs = c_strings(os.path.join(UNIT, "test_config.c"))
    return named("json", [v for v in strs if v.lstrip()[:1] in (b"{", b"[")] +
                 [b"{", b"{\"redis\": {\"port\": 1e99}}", b"\xef\xbb\xbf{}", b"{\"a\":\"\xff\"}"])


# ---- protobuf, by hand (proto/events.proto) ----

def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_int(field, v):
    return varint(field << 3) + varint(v)


def pb_str(field, v):
    v = v if isinstance(v, bytes) else v.encode()
    return varint(field << 3 | 2) + varint(len(v)) + v


def event(kind_field, body, ts=1763700000123, origin=b"lb1"):
    return pb_int(1, 1) + pb_int(2, ts) + pb_str(3, origin) + pb_str(kind_field, body)


def events_seeds():
    seeds = {
        "assigned": event(10, pb_str(1, "ws") + pb_str(2, "1abc") + pb_str(3, "s1")),
        "repinned": event(11, pb_str(1, "ws") + pb_str(2, "1abc") + pb_str(3, "s2") +
                          pb_str(4, "s1") + pb_str(5, "down")),
        "moved": event(12, pb_str(1, "ws") + pb_str(2, "1abc") + pb_str(3, "s2") +
                       pb_str(4, "s1")),
        "state": event(13, pb_str(1, "ws") + pb_str(2, "s3") + pb_int(3, 1) +
                       pb_int(4, 1763700600000) + pb_int(5, 1), ts=5, origin=b"stickyctl@h"),
        "joined": event(14, pb_str(1, "web1")),
        "left": event(15, pb_str(1, "web1") + pb_str(2, "heartbeat-expired")),
        "unknown_kind": event(99, b""),
        "hostile_names": event(13, pb_str(1, b"ws\x1b[2J") + pb_str(2, b"s1\nforged line") +
                               pb_int(3, 7), origin=b"\xff\xfe"),
        "negative_ts": event(10, pb_str(1, "ws"), ts=-1),
        "garbage": b"\xff\xff\xff\xff",
    }
    return seeds


# ---- cookies signed with fuzz_cookie.c's secret ----

FUZZ_SECRET = b"fuzzing-secret-current-0123"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def cookie_v1(nonce):
    tag = hmac.new(FUZZ_SECRET, b"stickyd-sid-v1\0" + nonce, hashlib.sha256).digest()[:16]
    return b"1" + b64(nonce + tag)


def cookie_v2(kind, rid, issued, stag):
    body = bytes([kind]) + rid + struct.pack(">I", issued) + stag
    mac = hmac.new(FUZZ_SECRET, b"stickyd-sid-v2\0" + body, hashlib.sha256).digest()[:16]
    return b"2" + b64(body + mac)


def cookie_seeds():
    seeds = {
        "signed_v1": cookie_v1(bytes(range(16))),
        "signed_v2_session": cookie_v2(1, bytes(range(16, 32)), 1763700000, b"\x01\x02\x03\x04"),
        "signed_v2_key": cookie_v2(2, b"\xff" * 16, 0xFFFFFFFF, b"\0\0\0\0"),
        "signed_v2_badkind": cookie_v2(3, bytes(16), 0, bytes(4)),
    }
    strs = c_strings(os.path.join(UNIT, "test_model.c"))
    seeds.update(named("model", [v for v in strs if 1 < len(v) <= 256]))
    return seeds


# ---- Redis replies (RESP2) ----

def resp(v):
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"$%d\r\n%s\r\n" % (len(v), v)
    if isinstance(v, tuple):  # (kind, text): an error or a status reply
        return (b"-" if v[0] == "err" else b"+") + v[1].encode() + b"\r\n"
    return b"*%d\r\n" % len(v) + b"".join(resp(x) for x in v)


def reply_seeds():
    # RESP replies of the scripts (fuzz_reply.c gives each to every parser)
    vec = {
        "decide_new": ("decide", [b"new", b"s1"]),
        "decide_hit": ("decide", [b"hit", b"s2", 0]),
        "decide_hit_moved": ("decide", [b"hit", b"s2", 1]),
        "decide_repin": ("decide", [b"repin", b"s1", b"s3"]),
        "decide_late": ("decide", [b"late"]),
        "decide_none": ("decide", [b"none", b"no usable server"]),
        "decide_long_name": ("decide", [b"new", b"s" * 80]),
        "decide_err": ("decide", ("err", "ERR stickyd: bad argument")),
        "decide_noscript": ("decide", ("err", "NOSCRIPT No matching script")),
        "ledger_batch": ("ledger", [1763700000123, [b"s1", b"3", b"s2", b"1"],
                                    [b"s1", b"drain:1763700600000:1", b"s2", b"ready"], 4, 1,
                                    [[1, b"s2"], [0, b"s1"]]]),
        "ledger_empty": ("ledger", [0, [], [], 0, 0, []]),
        "ledger_short": ("ledger", [1, [b"s1"], None]),
        "states": ("states", [[b"s1", b"drain:1763700600000:1", b"s2", b"maint"],
                              [b"s1", b"ready"]]),
        "states_bad": ("states", [[b"s1", 7], None]),
        "resync": ("resync", [b"web1", b"web2"]),
        "resync_err": ("resync", ("err", "BUSY Redis is busy")),
        "huge_int": ("ledger", [9223372036854775807, [b"s1", b"-9223372036854775808"], [], -1,
                                -9223372036854775807, [[-1, b""]]]),
    }
    seeds = {k: resp(v) for k, (_, v) in vec.items()}
    seeds["pipeline"] = b"".join(resp(v) for _, v in vec.values())
    seeds["ledger_moved_not_pairs"] = resp([1, [], [], 0, 0, [5, b"s1", [b"x"]]])
    return seeds


def slots_seeds():
    strs = c_strings(os.path.join(UNIT, "test_slots.c"))
    seeds = named("str", [v for v in strs if len(v) > 1])
    seeds["map3"] = b"0 5460 127.0.0.1:7000\n5461 10922 127.0.0.1:7001\n10923 16383 [::1]:7002\n"
    seeds["overlap"] = b"0 100 127.0.0.1:7000\n100 200 127.0.0.1:7001\n"
    seeds["tagged"] = b"sticky:be_ws:s:{2AbCdEfGhIjKlMnOpQrStUv}"
    return seeds


def write(name, seeds, clean=True):
    """clean=False keeps the hand-made seeds already there (seeds_cookie's)."""
    out = os.path.join(HERE, "seeds_" + name)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if clean and not old.startswith("crash-"):
            os.unlink(os.path.join(out, old))
    for key, data in sorted(seeds.items()):
        with open(os.path.join(out, key), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {out}")


def main():
    write("spop", spop_seeds())
    write("slog", slog_seeds())
    write("hapi", hapi_seeds())
    write("config", config_seeds())
    write("events", events_seeds())
    write("reply", reply_seeds())
    write("slots", slots_seeds())
    write("cookie", cookie_seeds(), clean=False)


if __name__ == "__main__":
    main()
