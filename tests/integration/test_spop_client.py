"""The pure-Python SPOP client's codec, checked against the spec's varint table
(SPOE.txt 3.1) and by round trips; the agent-facing half is exercised by every
integration test that uses it."""
import ipaddress

import pytest

import spop_client as sc


@pytest.mark.parametrize("lo,hi,nbytes", [
    (0, 239, 1), (240, 2287, 2), (2288, 264431, 3), (264432, 33818863, 4),
    (33818864, 4328786159, 5),
])
def test_varint_ranges_from_the_spec(lo, hi, nbytes):
    for v in (lo, hi):
        enc = sc.varint_encode(v)
        assert len(enc) == nbytes
        assert sc.varint_decode(enc, 0) == (v, nbytes)


def test_varint_limits():
    enc = sc.varint_encode((1 << 64) - 1)
    assert len(enc) == 10 and sc.varint_decode(enc, 0)[0] == (1 << 64) - 1
    for cut in range(1, len(enc)):
        with pytest.raises(sc.SpopError):
            sc.varint_decode(enc[:cut], 0)
    with pytest.raises(sc.SpopError):
        sc.varint_decode(b"\xff" * 11, 0)


def test_typed_data_round_trip():
    values = [None, True, False, 0, -1, -(1 << 63), (1 << 63) - 1, sc.Int32(-5),
              sc.Uint32(4000000000), sc.Uint64((1 << 64) - 1), "", "h\u00e9llo", b"\x00\xff",
              ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")]
    for v in values:
        enc = sc.data_encode(v)
        assert sc.data_decode(enc, 0) == (v, len(enc))
        assert type(sc.data_decode(enc, 0)[0]) in (type(None), bool, int, str, bytes,
                                                   ipaddress.IPv4Address,
                                                   ipaddress.IPv6Address)
    assert sc.data_encode(True) == b"\x11" and sc.data_encode(None) == b"\x00"


def test_ack_actions_decode():
    payload = (bytes([sc.ACT_SET_VAR, 3, 2]) + sc._str(b"server") + sc.data_encode("ws1")
               + bytes([sc.ACT_SET_VAR, 3, 2]) + sc._str(b"n") + sc.data_encode(7)
               + bytes([sc.ACT_UNSET_VAR, 2, 1]) + sc._str(b"gone"))
    assert sc.actions_decode(payload) == {"server": "ws1", "n": 7, "gone": None}
    full = sc.actions_decode_full(payload)
    assert [(a, s, n) for a, s, n, _ in full] == [(1, "txn", "server"), (1, "txn", "n"),
                                                   (2, "sess", "gone")]
    with pytest.raises(sc.SpopError):
        sc.actions_decode(payload[:-1])
    # every truncation either raises or, cut at an action boundary, decodes a prefix
    for cut in range(len(payload)):
        try:
            got = sc.actions_decode_full(payload[:cut])
        except sc.SpopError:
            continue
        assert got == full[:len(got)] and len(got) < len(full)


def test_frame_layout():
    f = sc.frame_encode(sc.NOTIFY, b"xy", stream_id=5, frame_id=300)
    assert f[:4] == (len(f) - 4).to_bytes(4, "big")
    assert f[4] == sc.NOTIFY and f[5:9] == b"\x00\x00\x00\x01"
    sid, pos = sc.varint_decode(f, 9)
    fid, pos = sc.varint_decode(f, pos)
    assert (sid, fid, f[pos:]) == (5, 300, b"xy")
