"""MAVLink 2 signing: key hygiene and the inbound verifier, cross-checked against pymavlink."""

import pickle
import struct

import pytest
from pymavlink.dialects.v20 import all as mavlink

from terrafix.autopilot.signing import (
    SignatureVerdict,
    SignatureVerifier,
    SigningKey,
    signing_timestamp_now,
)

KEY = bytes(range(32))


def signed_encoder(key: bytes, *, sysid=1, compid=1, timestamp=None, link_id=0):
    """pymavlink's own signing (independent of our verifier)."""
    mav = mavlink.MAVLink(None, srcSystem=sysid, srcComponent=compid)
    mav.signing.secret_key = key
    mav.signing.sign_outgoing = True
    mav.signing.link_id = link_id
    mav.signing.timestamp = signing_timestamp_now() if timestamp is None else timestamp
    return mav


def attitude(roll=0.1):
    return mavlink.MAVLink_attitude_message(1234, roll, 0.2, 0.3, 0.0, 0.0, 0.0)


def test_key_is_32_random_bytes_and_fresh_each_time():
    a, b = SigningKey.generate(), SigningKey.generate()
    assert len(a.material) == 32 and isinstance(a.material, bytearray)
    assert a.material != b.material


def test_key_never_shows_in_repr_str_or_pickle():
    k = SigningKey(KEY)
    for text in (repr(k), str(k), f"{k}", repr([k])):
        assert KEY.hex() not in text and "redacted" in text
    with pytest.raises(TypeError):
        pickle.dumps(k)


def test_zero_overwrites_the_live_bytes_used_by_the_encoder():
    k = SigningKey(KEY)
    live = k.material
    k.zero()
    assert live == bytearray(32) and k.is_zeroed
    assert "zeroed" in repr(k)


def test_packets_signed_by_pymavlink_are_accepted():
    v = SignatureVerifier(SigningKey(KEY))
    mav = signed_encoder(KEY)
    for i in range(5):
        assert v.check(attitude(i).pack(mav)) is SignatureVerdict.ACCEPTED


def test_pymavlink_accepts_what_pymavlink_signs_and_agrees_with_us_on_a_wrong_key():
    """Our verifier and pymavlink's own check reach the same verdicts."""
    good = attitude().pack(signed_encoder(KEY))
    bad = attitude().pack(signed_encoder(bytes(32 * [7])))
    for packet, expected in ((good, True), (bad, False)):
        rx = mavlink.MAVLink(None)
        rx.signing.secret_key = KEY
        rx.robust_parsing = True
        msgs = rx.parse_buffer(packet) or []
        theirs = bool(msgs) and msgs[0].get_type() == "ATTITUDE"
        ours = SignatureVerifier(SigningKey(KEY)).check(packet) is SignatureVerdict.ACCEPTED
        assert theirs == ours == expected


def test_wrong_key_unsigned_and_tampered_are_rejected():
    v = SignatureVerifier(SigningKey(KEY))
    assert v.check(attitude().pack(signed_encoder(bytes(32)))) is SignatureVerdict.BAD_SIGNATURE
    assert v.check(attitude().pack(mavlink.MAVLink(None, 1, 1))) is SignatureVerdict.UNSIGNED
    packet = bytearray(attitude().pack(signed_encoder(KEY)))
    packet[14] ^= 0x01  # a payload bit (the signature covers header .. timestamp)
    assert v.check(packet) is SignatureVerdict.BAD_SIGNATURE
    mav1 = attitude().pack(mavlink.MAVLink(None, 1, 1), force_mavlink1=True)
    assert v.check(mav1) is SignatureVerdict.NOT_MAVLINK2


def test_replayed_packet_is_rejected():
    v = SignatureVerifier(SigningKey(KEY))
    p1 = attitude(1.0).pack(signed_encoder(KEY))
    assert v.check(p1) is SignatureVerdict.ACCEPTED
    assert v.check(p1) is SignatureVerdict.REPLAY


def test_new_stream_more_than_a_minute_old_is_rejected():
    v = SignatureVerifier(SigningKey(KEY))
    old = signing_timestamp_now() - 61 * 100_000
    assert v.check(attitude().pack(signed_encoder(KEY, timestamp=old))) is (
        SignatureVerdict.STALE_STREAM)
    recent = signing_timestamp_now() - 30 * 100_000
    assert v.check(attitude().pack(signed_encoder(KEY, timestamp=recent))) is (
        SignatureVerdict.ACCEPTED)


def test_forged_future_timestamp_cannot_lock_out_the_genuine_stream():
    """pymavlink moves the replay window before checking the HMAC; we must not."""
    v = SignatureVerifier(SigningKey(KEY))
    genuine = signed_encoder(KEY)
    assert v.check(attitude().pack(genuine)) is SignatureVerdict.ACCEPTED
    forged = bytearray(attitude().pack(genuine))
    far_future = signing_timestamp_now() + 10**12
    forged[-12:-6] = struct.pack("<Q", far_future)[:6]
    assert v.check(forged) is SignatureVerdict.BAD_SIGNATURE
    assert v.check(attitude().pack(genuine)) is SignatureVerdict.ACCEPTED


def test_streams_are_separate_per_link_system_and_component():
    v = SignatureVerifier(SigningKey(KEY))
    ts = signing_timestamp_now()
    a = signed_encoder(KEY, sysid=1, compid=1, timestamp=ts)
    b = signed_encoder(KEY, sysid=1, compid=2, timestamp=ts)
    assert v.check(attitude().pack(a)) is SignatureVerdict.ACCEPTED
    assert v.check(attitude().pack(b)) is SignatureVerdict.ACCEPTED  # same timestamp, own stream


def test_zeroed_key_accepts_nothing():
    k = SigningKey(KEY)
    v = SignatureVerifier(k)
    k.zero()
    packet = attitude().pack(signed_encoder(bytes(32)))  # even one signed with all zeros
    assert v.check(packet) is SignatureVerdict.BAD_SIGNATURE
