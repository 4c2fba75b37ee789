#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into this directory (one folder per target).

The seeds are committed; rerun this after a format change. Commands are what redis-cli and
redis-benchmark send, replies what a server sends, headers, marks and records valid ones
as the store writes them (see src/format/)."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def resp(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


COMMANDS = {
    "ping_inline": b"PING\r\n",
    "ping": resp(b"PING"),
    "set": resp(b"SET", b"key:000000000042", b"xxx"),
    "get": resp(b"GET", b"key:000000000042"),
    "get_inline": b"GET key\n",
    "quoted_inline": b'SET "a\\x41\\n" \'b\\\'c\'\r\n',
    "pipeline": resp(b"SET", b"a", b"1") + resp(b"GET", b"a") + resp(b"DEL", b"a"),
    "mset": resp(b"MSET", b"a", b"1", b"b", b"2"),
    "range": resp(b"RANGE", b"-", b"+", b"LIMIT", b"10"),
    "hello": resp(b"HELLO", b"3", b"AUTH", b"default", b"pw"),
    "empty": b"*0\r\n\r\n*-1\r\n",
    "binary": resp(b"SET", b"\x00\r\n\xff", bytes(range(256))),
    "partial": b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nab",
}

REPLIES = {
    "simple": b"+OK\r\n",
    "error": b"-ERR unknown command 'x'\r\n",
    "integer": b":-42\r\n",
    "bulk": b"$5\r\nhello\r\n",
    "null2": b"$-1\r\n",
    "null_array": b"*-1\r\n",
    "null3": b"_\r\n",
    "array": b"*3\r\n$1\r\na\r\n:1\r\n*1\r\n+x\r\n",
    "map": b"%2\r\n+server\r\n+toykv\r\n+proto\r\n:3\r\n",
    "double": b",1.5\r\n",
    "double_inf": b",-inf\r\n",
    "boolean": b"#t\r\n",
    "verbatim": b"=8\r\ntxt:text\r\n",
    "set": b"~2\r\n#f\r\n_\r\n",
    "push": b">2\r\n+message\r\n$1\r\nx\r\n",
    "big": b"(-123456789012345678901234567890\r\n",
    "blob_error": b"!3\r\nERR\r\n",
    "attribute": b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
}

KINDS = [b"toykv.k\0", b"toykv.v\0", b"toykv.b\0"]


def header(kind: int, slots: int, section: int) -> bytes:
    b = KINDS[kind] + struct.pack("<IIIIII", 1, 4096, slots, 256, 32, section) + bytes(28)
    return b + struct.pack("<I", crc32c(b))


def mark(gen: int, synced: int) -> bytes:
    b = struct.pack("<QQ", gen, synced)
    return b + struct.pack("<I", crc32c(b))


def record(key: int, seq: int, put: bool, value: bytes = b"", slot: int = 0) -> bytes:
    if put:
        b = struct.pack(">Q", key) + struct.pack("<QIHBBI", seq, slot, len(value), 1, 0, crc32c(value))
    else:
        b = struct.pack(">Q", key) + struct.pack("<QIHBBI", seq, 0, 0, 2, 0, 0)
    return b + struct.pack("<I", crc32c(b))


def write(target: str, seeds: dict) -> None:
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


write("command", COMMANDS)
write("reply", REPLIES)
# header: selector byte (kind = byte % 3; 0x08 rewrites the CRC), then the header.
write("header", {
    "keys": bytes([0]) + header(0, 65536, 0),
    "values": bytes([1]) + header(1, 16, 7),
    "buffer": bytes([2]) + header(2, 1 << 24, 0xFFFFFFFF),
    "fix_crc": bytes([0x18]) + header(0, 64, 1),
})
# mark: selector byte (bit i rewrites mark i's CRC), then marks A and B.
write("mark", {
    "both": bytes([0]) + mark(1, 10) + mark(2, 20),
    "older_b": bytes([0]) + mark(5, 100) + mark(4, 90),
    "one": bytes([0]) + mark(1, 1) + bytes(20),
    "fix": bytes([3]) + mark(7, 7) + mark(7, 8),
})
# record: mode byte (1 rewrites the CRC, 2 the sequence, 4 builds a delete), sequence, record,
# then the fields of a built record.
write("record", {
    "put": bytes([0]) + struct.pack("<Q", 0) + record(42, 0, True, b"hello"),
    "put_full": bytes([0]) + struct.pack("<Q", 65537) + record(7, 65537, True, b"x" * 256, 65537),
    "delete": bytes([4]) + struct.pack("<Q", 9) + record(1 << 63, 9, False),
    "fix": bytes([3]) + struct.pack("<Q", 3) + record(1, 99, True, b"") + bytes(18),
})
