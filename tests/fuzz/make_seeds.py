#!/usr/bin/python3
"""make_seeds.py - derive the fuzz seed corpus from the unit-test vectors.

Reads every `static const uint8_t name[] = {...};` byte array of
tests/unit/test_spop.c (the frames captured from HAProxy 2.6 and the literal
ones) and writes tests/fuzz/seeds/: each frame, its payload alone, a few
truncations and corruptions, and the frames back to back as one stream.
Re-run after changing the vectors: /usr/bin/python3 tests/fuzz/make_seeds.py
"""
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "unit", "test_spop.c")
OUT = os.path.join(HERE, "seeds")


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


def main():
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
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        os.unlink(os.path.join(OUT, old))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
