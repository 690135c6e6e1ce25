#!/usr/bin/env python3
"""Limits on what one client can make a member hold (issue 12 part 6):

- --max-concurrent-streams reaches the client port's HTTP/2 SETTINGS
  (SETTINGS_MAX_CONCURRENT_STREAMS), on detcd as on etcd 3.4;
- watch streams whose client never reads: a raw HTTP/2 client opens many
  Watch streams on a prefix and then never reads its socket while large
  values are written under the prefix. The member's RSS must stay bounded
  (it does not grow with the traffic: each stream's queue is bounded in
  responses and bytes, and the watchers catch up from history later), and
  the member keeps serving everyone else: puts and gets answer, and a
  reading watcher (etcdctl watch) sees every event.

Run alone:  python3 test_watch_flood.py --server build/detcd [-v]
"""

import socket
import struct
import time

import cluster
from cluster import CONFIG, ClusterTestCase

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, HEADERS, DATA = 4, 1, 0
END_HEADERS = 0x4


def frame(ftype, flags, stream, payload):
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
            struct.pack(">I", stream) + payload)


def hpack_literal(name, value):
    """Literal header field without indexing, new name (RFC 7541 6.2.2)."""
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def pb_bytes(field, data):
    assert len(data) < 128
    return bytes([(field << 3) | 2, len(data)]) + data


def watch_create(key, range_end):
    """etcdserverpb.WatchRequest{create_request{key, range_end}}."""
    return pb_bytes(1, pb_bytes(1, key) + pb_bytes(2, range_end))


def read_frames(sock, until, timeout=5.0):
    """Reads frames until until(ftype, flags, stream, payload) is true;
    returns that frame or None."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF,
                 buf[9:9 + n])
            buf = buf[9 + n:]
            if until(*f):
                return f
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None
        if not chunk:
            return None
        buf += chunk
    return None


def server_settings(port):
    """The server's first SETTINGS frame on a fresh HTTP/2 connection, as a
    dict {identifier: value}."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(H2_PREFACE + frame(SETTINGS, 0, 0, b""))
        f = read_frames(s, lambda t, fl, st, p: t == SETTINGS and not fl & 1)
        if f is None:
            return None
        p = f[3]
        return {int.from_bytes(p[i:i + 2], "big"):
                int.from_bytes(p[i + 2:i + 6], "big")
                for i in range(0, len(p), 6)}
    finally:
        s.close()


class NonReadingWatcher:
    """One HTTP/2 connection with `streams` Watch streams on [key, end),
    a small receive window, and a socket that is never read."""

    def __init__(self, port, streams, key, end):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        # Smallest receive buffer: the kernel holds little for us either.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # SETTINGS_INITIAL_WINDOW_SIZE = 1024.
        out = H2_PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1024))
        msg = watch_create(key, end)
        grpc_msg = b"\x00" + struct.pack(">I", len(msg)) + msg
        for i in range(streams):
            sid = 1 + 2 * i
            hdrs = (hpack_literal(":method", "POST") +
                    hpack_literal(":scheme", "http") +
                    hpack_literal(":path", "/etcdserverpb.Watch/Watch") +
                    hpack_literal(":authority", "127.0.0.1:%d" % port) +
                    hpack_literal("content-type", "application/grpc") +
                    hpack_literal("te", "trailers"))
            out += frame(HEADERS, END_HEADERS, sid, hdrs)
            out += frame(DATA, 0, sid, grpc_msg)
        self.sock.sendall(out)

    def close(self):
        self.sock.close()


class Flood(ClusterTestCase):
    def test_max_concurrent_streams_advertised(self):
        for binary in (CONFIG["server"], CONFIG["reference"]):
            with self.subTest(binary=binary):
                c = self.new_cluster(
                    binary, extra_flags=["--max-concurrent-streams=7"])
                got = server_settings(c.members[0].client_port)
                self.assertIsNotNone(got, "no SETTINGS from the server")
                # 3: SETTINGS_MAX_CONCURRENT_STREAMS
                self.assertEqual(got.get(3), 7, got)

    def test_non_reading_watch_streams_stay_bounded(self):
        streams, puts, value_kib = 16, 60, 1000
        c = self.new_cluster(CONFIG["server"])
        m = c.members[0]
        ep = [m.endpoint]
        reader = c.background(["watch", "--prefix", "flood/"])
        hogs = [NonReadingWatcher(m.client_port, streams // 2, b"flood/",
                                  b"flood0") for _ in range(2)]
        self.addCleanup(lambda: [h.close() for h in hogs])
        time.sleep(0.5)  # let the watches be created
        rss0 = m.rss_kib()
        value = "v" * (value_kib * 1024)
        samples = []
        for i in range(puts):
            r = cluster.run_etcdctl(ep, ["put", "flood/k%d" % (i % 4)],
                                    stdin=value.encode(), timeout=30)
            self.assertTrue(r.ok, r.describe())
            if i % 10 == 9:
                samples.append(m.rss_kib())
                # Everyone else is served meanwhile.
                t0 = time.monotonic()
                g = c.etcdctl(["get", "flood/k0", "--keys-only"])
                self.assertTrue(g.ok, g.describe())
                self.assertLess(time.monotonic() - t0, 5.0)
        rss1 = m.rss_kib()
        # The reading watcher saw the last put.
        last = ("flood/k%d" % ((puts - 1) % 4)).encode()
        self.assertTrue(reader.wait_for(
            lambda out: out.count(b"PUT\n") >= puts, timeout=60),
            "the reading watcher did not see every put: %d of %d" %
            (reader.output().count(b"PUT\n"), puts))
        self.assertIn(last, reader.output())
        grown_mib = (rss1 - rss0) / 1024
        written_mib = puts * value_kib / 1024
        # Unbounded, each non-reading stream would hold every response:
        # streams * written_mib (~940 MiB here), growing with every put.
        # Bounded: the store's own copies of the values (every revision is
        # kept) plus, per stream, the 2 MiB queue, the response gRPC is
        # writing and its encoding (a few MiB at 1 MB per response).
        bound = 1.5 * written_mib + streams * 12 + 64
        # And it stops growing: over the second half of the puts the RSS
        # grows by about the store's growth (allocation is lumpy: allow
        # twice that), not by streams times it (~470 MiB unbounded).
        half = samples[len(samples) // 2 - 1]
        late_mib = (samples[-1] - half) / 1024
        late_bound = written_mib + 64
        print("rss: start %.0f MiB, end %.0f MiB, grown %.0f MiB "
              "(bound %.0f; second half %.0f, bound %.0f; written %.0f MiB, "
              "%d non-reading streams); every 10 puts: %s" %
              (rss0 / 1024, rss1 / 1024, grown_mib, bound, late_mib,
               late_bound, written_mib, streams,
               [s // 1024 for s in samples]))
        self.assertLess(grown_mib, bound)
        self.assertLess(late_mib, late_bound)
        reader.stop()


if __name__ == "__main__":
    cluster.main()
