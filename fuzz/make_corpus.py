"""Writes the seed corpus of fuzz/ (python3 fuzz/make_corpus.py).

Handshake seeds carry valid replies for the target's fixed key and nonce,
so the fuzzer starts past the MAC checks; frame seeds cover each header form.
"""
import hmac
import os
import struct

KEY = b"fuzz key"
HERE = os.path.dirname(os.path.abspath(__file__))


def frame(b):
    return struct.pack("!i", len(b)) + b


def mac(body, name="md5"):
    return hmac.new(KEY, body, name).digest()


def write(kind, name, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


ours = {0: b"{sha256}" + bytes(40), 2: bytes(20), 4: b"{sha384}" + bytes(40)}
theirs_modern = b"{sha256}" + bytes(range(40))
theirs_legacy = bytes(range(20))
W = frame(b"#WELCOME#")


def reply_modern(body, name):
    return frame(b"{%s}" % name.encode() + mac(body, name))


# We listen (deliver, then answer).
write("handshake", "listen_sha256", bytes([0]) + reply_modern(ours[0], "sha256")
      + frame(b"#CHALLENGE#" + theirs_modern) + W)
write("handshake", "listen_md5_reply", bytes([0]) + frame(mac(ours[0]))
      + frame(b"#CHALLENGE#" + theirs_legacy) + W)
write("handshake", "listen_legacy", bytes([2]) + frame(mac(ours[2]))
      + frame(b"#CHALLENGE#" + theirs_legacy) + W)
write("handshake", "listen_sha384", bytes([4]) + reply_modern(ours[4], "sha384")
      + frame(b"#CHALLENGE#" + b"{sha384}" + bytes(range(40))) + W)
# We connect (answer, then deliver).
write("handshake", "client_sha256", bytes([1]) + frame(b"#CHALLENGE#" + theirs_modern) + W
      + reply_modern(ours[0], "sha256"))
write("handshake", "client_legacy", bytes([1]) + frame(b"#CHALLENGE#" + theirs_legacy) + W
      + frame(mac(ours[0])))
write("handshake", "garbage", bytes([0]) + b"GET / HTTP/1.1\r\n\r\n")
write("handshake", "oversized", bytes([1]) + struct.pack("!i", 257) + b"#CHALLENGE#")

write("frames", "small", bytes([0]) + frame(b"hello") + frame(b""))
write("frames", "bounded", bytes([1]) + frame(b"0123456789abcdef") + frame(b"x" * 17))
write("frames", "long_form", bytes([0]) + b"\xff\xff\xff\xff" + struct.pack("!Q", 3) + b"abc")
write("frames", "negative", bytes([2]) + b"\xff\xff\xff\xfb")
write("frames", "into_short", bytes([4]) + frame(b"y" * 100) + frame(b"z"))
write("frames", "truncated", bytes([3]) + struct.pack("!i", 100) + b"partial")


# Manager requests (docs/PROTOCOL.md): op, counts, i64 integers, u32-length strings;
# each prefixed for the target by a 2-byte little-endian length.
def mreq(op, ints=(), blobs=()):
    b = struct.pack("<BBB", op, len(ints), len(blobs))
    b += b"".join(struct.pack("<q", i) for i in ints)
    b += b"".join(struct.pack("<I", len(s)) + s for s in blobs)
    return struct.pack("<H", len(b)) + b


OPEN, SHUTDOWN, REFRESH, GROW = 0x02, 0x03, 0x04, 0x05
write("manager", "dict", mreq(OPEN, (1, 0, 0), (b"d",)) + mreq(0x10, (1,), (b"k", b"v"))
      + mreq(0x11, (1,), (b"k",)) + mreq(0x17, (1, 5), (b"n",)) + mreq(0x18, (1, 1), (b"k", b"v", b"w"))
      + mreq(0x15, (1,)) + mreq(0x13, (1,), (b"k",)) + mreq(0x14, (1,)) + mreq(0x16, (1,)))
write("manager", "list", mreq(OPEN, (2, 0, 0), (b"",)) + mreq(0x20, (1,), (b"a",))
      + mreq(0x20, (1,), (b"bb",)) + mreq(0x22, (1, -1), (b"c",)) + mreq(0x23, (1, 0))
      + mreq(0x21, (1, -1)) + mreq(0x25, (1,)) + mreq(0x24, (1,)))
write("manager", "grow", mreq(OPEN, (1, 0, 0), (b"",)) + mreq(GROW, (1, 0, 3, 4096, 1))
      + mreq(REFRESH, (1,)) + mreq(0x10, (1,), (b"k" * 300, b"v" * 3000)))
write("manager", "queue", mreq(OPEN, (7, 2, 1), (b"q",)) + mreq(0x48, (1, 0), (b"item",))
      + mreq(0x49, (1, 0, 1)) + mreq(0x49, (1, 0, -1)) + mreq(0x4A, (1,)) + mreq(0x4B, (1,))
      + mreq(0x4C, (1, 0)))
write("manager", "sync", mreq(OPEN, (3, 0, 0), (b"l",)) + mreq(0x30, (1, 7, 0))
      + mreq(0x30, (1, 8, 0)) + mreq(0x31, (1, 7)) + mreq(OPEN, (5, 1, 2), (b"",))
      + mreq(0x38, (2, 0)) + mreq(0x39, (2,)) + mreq(0x3A, (2,)) + mreq(OPEN, (6, 0, 0), (b"",))
      + mreq(0x40, (3,)) + mreq(0x43, (3, 0)) + mreq(0x42, (3,)) + mreq(SHUTDOWN))
# Calls as the manager's mp_queue_t / mp_rlock_t / mp_event_t make them:
# re-entry, clear, and a queue that is not joinable (task_done, join: MP_ETYPE).
write("manager", "proxies", mreq(OPEN, (4, 0, 0), (b"r",)) + mreq(0x30, (1, 9, -1))
      + mreq(0x30, (1, 9, 0)) + mreq(0x31, (1, 9)) + mreq(0x31, (1, 9)) + mreq(0x31, (1, 9))
      + mreq(OPEN, (6, 0, 0), (b"e",)) + mreq(0x40, (2,)) + mreq(0x41, (2,)) + mreq(0x43, (2, 5))
      + mreq(OPEN, (7, 0, 0), (b"",)) + mreq(0x4B, (3,)) + mreq(0x4C, (3, 0))
      + mreq(0x48, (3, -1), (b"",)) + mreq(0x49, (3, -1, 0)) + mreq(0x4A, (3,)))
write("manager", "garbage", struct.pack("<H", 6) + b"\x11\x01\x01\xff\xff\xff")
