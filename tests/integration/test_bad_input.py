#!/usr/bin/env python3
"""Bad input against the server under test (--server): oversized requests,
txns over the op limit, odd ranges, unknown lease IDs (etcdctl, with etcd's
error texts), and garbage bytes on the client and peer ports (raw sockets).
After every case the members must still serve a put and a get, and the peers
must still agree (`endpoint hashkv --cluster`).

Run alone:  python3 test_bad_input.py --server build/detcd [-v]
"""

import json
import random
import socket
import struct
import sys
import time

import cluster
from cluster import CONFIG, ClusterTestCase

SEED = 20240611


def send_raw(port, payload, read_timeout=0.5, chunked=False):
    """Sends payload to 127.0.0.1:port and returns (reply_bytes, how) where
    how is 'closed' (peer closed or reset), 'open' (still open after the
    read timeout) or 'refused'."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        return b"", "refused"
    reply = b""
    how = "open"
    try:
        if chunked:
            for i in range(0, len(payload), 7):
                s.sendall(payload[i:i + 7])
        else:
            s.sendall(payload)
        s.settimeout(read_timeout)
        while len(reply) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                how = "closed"
                break
            reply += chunk
    except socket.timeout:
        how = "open"
    except (ConnectionResetError, BrokenPipeError):
        how = "closed"
    finally:
        s.close()
    return reply, how


def h2_frame(ftype, flags, stream, payload, length=None):
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream & 0x7FFFFFFF) + payload


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def garbage_payloads():
    """(name, bytes) pairs: protocol-shaped and random garbage."""
    rng = random.Random(SEED)
    out = [
        ("zeros", b"\x00" * 4096),
        ("ff bytes", b"\xff" * 4096),
        ("newlines", b"\r\n" * 1000),
        ("http1 bad request line", b"FOO /x\r\n\r\n"),
        ("http1 get unknown path", b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("http1 huge header", b"GET /health HTTP/1.1\r\nX: " + b"a" * 200000 +
         b"\r\n\r\n"),
        ("http1 post v3 garbage json", b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\n"
         b"Content-Type: application/json\r\nContent-Length: 9\r\n\r\n{garbage"),
        ("http1 bad content-length", b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: 99999999999999999999\r\n\r\nabc"),
        ("tls client hello on plaintext", bytes.fromhex(
            "160301002d0100002903035f") + bytes(range(32)) +
         bytes.fromhex("000002002f0100")),
        ("h2 preface only", H2_PREFACE),
        ("h2 preface + garbage", H2_PREFACE + b"\x01\x02\x03" * 100),
        ("h2 frame claiming 16 MiB", H2_PREFACE + h2_frame(4, 0, 0, b"") +
         h2_frame(0, 0, 1, b"x" * 10, length=0xFFFFFF)),
        ("h2 headers with bad hpack", H2_PREFACE + h2_frame(4, 0, 0, b"") +
         h2_frame(1, 0x4, 1, b"\xff\xff\xff\xff\xff\xff")),
        ("h2 data on stream 0", H2_PREFACE + h2_frame(4, 0, 0, b"") +
         h2_frame(0, 1, 0, b"hello")),
        ("h2 window update overflow", H2_PREFACE + h2_frame(4, 0, 0, b"") +
         h2_frame(8, 0, 0, struct.pack(">I", 0x7FFFFFFF)) +
         h2_frame(8, 0, 0, struct.pack(">I", 0x7FFFFFFF))),
        ("h2 settings bad length", H2_PREFACE + h2_frame(4, 0, 0, b"\x00" * 5)),
        ("grpc length prefix 4 GiB", H2_PREFACE + h2_frame(4, 0, 0, b"") +
         h2_frame(0, 0, 1, b"\x00\xff\xff\xff\xff" + b"x" * 32)),
        ("length-prefixed frame 4 GiB", b"\xff\xff\xff\xff" + b"\x00" * 64),
        ("length-prefixed frame 8 EiB", b"\x7f" + b"\xff" * 7 + b"\x01" * 64),
    ]
    for i in range(12):
        n = rng.choice([1, 7, 64, 1000, 70000])
        out.append(("random %d (%d bytes, seed %d)" % (i, n, SEED),
                    bytes(rng.getrandbits(8) for _ in range(n))))
    return out


def peer_payloads():
    """Garbage shaped like etcd's HTTP peer protocol, plus raw garbage."""
    out = [
        ("peer GET /version", b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("peer GET /members", b"GET /members HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("peer POST /raft garbage", b"POST /raft HTTP/1.1\r\nHost: x\r\n"
         b"Content-Type: application/protobuf\r\nContent-Length: 64\r\n\r\n" +
         b"\x08\x99" * 32),
        ("peer stream msgapp unknown member",
         b"GET /raft/stream/msgappv2/1234 HTTP/1.1\r\nHost: x\r\n"
         b"X-Server-From: 1234\r\nX-Etcd-Cluster-ID: 1\r\n\r\n"),
        ("peer POST /raft/snapshot huge", b"POST /raft/snapshot HTTP/1.1\r\n"
         b"Host: x\r\nContent-Length: 99999999999\r\n\r\n" + b"z" * 1000),
    ]
    return out + garbage_payloads()


class BadInput(ClusterTestCase):
    """One 3-member cluster for the whole class (cases do not change the
    data beyond their own keys)."""

    @classmethod
    def setUpClass(cls):
        cls.c = cls.new_class_cluster(CONFIG["server"], size=3, label="server")
        try:
            cls.c.start()
        except BaseException:
            sys.stderr.write(cls.c.log_report() + "\n")
            cls.tearDownClass()
            raise
        cls.n = 0

    def assertServing(self, what):
        """Every member is alive, a put through member 0 and a
        linearizable get through every member see it."""
        c = self.c
        for m in c.members:
            self.assertTrue(m.alive(), "%s died after %s:\n%s" % (
                m.name, what, m.log_tail()))
        type(self).n += 1
        key, val = "alive/%d" % self.n, "after %s" % what
        r = c.etcdctl(["put", key, val], members=c.members[:1], timeout=15)
        self.assertEqual(r.rc, 0, "put after %s:\n%s" % (what, r.describe()))
        for m in c.members:
            r = c.etcdctl(["get", key, "--print-value-only"], members=[m],
                          timeout=15)
            self.assertEqual((r.rc, r.out), (0, val + "\n"),
                             "get from %s after %s:\n%s" % (m.name, what,
                                                            r.describe()))

    def ctl(self, args, stdin=None):
        return self.c.etcdctl(args, stdin=stdin, members=self.c.members[:1],
                              timeout=30)

    def assertEtcdError(self, r, text, rc=1):
        self.assertEqual(r.rc, rc, r.describe())
        self.assertIn("Error: " + text, r.err, r.describe())

    # -- etcdctl-level bad requests

    def test_oversized_requests(self):
        r = self.ctl(["put", "big/a"], stdin="v" * (1536 * 1024 + 1))
        self.assertEtcdError(r, "etcdserver: request is too large")
        self.assertServing("1.5 MiB + 1 put")
        r = self.ctl(["put", "big/b"], stdin="v" * (3 * 1024 * 1024))
        self.assertEqual(r.rc, 1, r.describe())
        self.assertIn("ResourceExhausted", r.err, r.describe())
        self.assertServing("3 MiB put")
        r = self.ctl(["put", "big/c"], stdin="v" * (1536 * 1024 - 200))
        self.assertEqual(r.rc, 0, "a put just under 1.5 MiB:\n" + r.describe())
        self.assertServing("just under 1.5 MiB")
        txn = "\n" + "".join("put big/t%d %s\n" % (i, "w" * 200000)
                             for i in range(10)) + "\n\n"
        r = self.ctl(["txn"], stdin=txn)
        self.assertEqual(r.rc, 1, r.describe())
        self.assertServing("2 MB txn")

    def test_txn_op_limit(self):
        over = "\n" + "".join("put ops/%d v\n" % i for i in range(129)) + "\n\n"
        self.assertEtcdError(self.ctl(["txn"], stdin=over),
                             "etcdserver: too many operations in txn request")
        cmps = "".join('value("ops/%d") = "v"\n' % i for i in range(129))
        self.assertEtcdError(self.ctl(["txn"], stdin=cmps + "\n\n\n"),
                             "etcdserver: too many operations in txn request")
        dup = "\nput ops/d 1\nput ops/d 2\n\n\n"
        self.assertEtcdError(self.ctl(["txn"], stdin=dup),
                             "etcdserver: duplicate key given in txn request")
        self.assertServing("txn limits")

    def test_invalid_ranges(self):
        for args in (["get", "zzz", "aaa"], ["del", "zzz", "aaa"],
                     ["get", "a", "a"], ["get", "\x01", "\x01"],
                     ["get", "x", "--rev=-1"], ["get", "x", "--limit=-5"],
                     ["get", "\xff\xff", "--from-key"],
                     ["del", "\xff", "--prefix"]):
            r = self.ctl(args)
            self.assertIn(r.rc, (0, 1), r.describe())
            self.assertNotIn("panic", r.err)
            self.assertServing(" ".join(args))
        self.assertEtcdError(self.ctl(["get", "x", "--rev=999999999"]),
                             "etcdserver: mvcc: required revision is a future "
                             "revision")
        self.assertEtcdError(self.ctl(["put", "", "v"]),
                             "etcdserver: key is not provided")
        self.assertEtcdError(self.ctl(["compaction", "999999999"]),
                             "etcdserver: mvcc: required revision is a future "
                             "revision")
        self.assertServing("ranges")

    def test_unknown_leases(self):
        self.assertEtcdError(self.ctl(["put", "ul/k", "v", "--lease=7fffabcd"]),
                             "etcdserver: requested lease not found")
        self.assertEtcdError(self.ctl(["lease", "revoke", "7fffabcd"]),
                             "failed to revoke lease (etcdserver: requested "
                             "lease not found)")
        self.assertEtcdError(self.ctl(["lease", "keep-alive", "--once",
                                       "7fffabcd"]),
                             "etcdserver: requested lease not found", rc=2)
        r = self.ctl(["lease", "timetolive", "7fffabcd"])
        self.assertEqual((r.rc, r.out), (0, "lease 000000007fffabcd already "
                                            "expired\n"), r.describe())
        r = self.ctl(["lease", "revoke", "7fffffffffffffff"])
        self.assertEqual(r.rc, 1, r.describe())
        self.assertEtcdError(self.ctl(["lease", "grant", "9000000001"]),
                             "failed to grant lease (etcdserver: too large "
                             "lease TTL)")
        self.assertServing("unknown leases")

    # -- raw sockets

    def _garbage(self, port_of, payloads, kind):
        summary = []
        for name, payload in payloads:
            m = self.c.members[len(summary) % len(self.c.members)]
            reply, how = send_raw(port_of(m), payload)
            summary.append("%-40s -> %s %s" % (name, how,
                                               reply[:60].hex() if reply
                                               and not reply[:4].isascii()
                                               else repr(reply[:60])))
            self.assertNotEqual(how, "refused", "%s port of %s refused after "
                                "earlier garbage" % (kind, m.name))
            self.assertServing("%s %s on %s" % (kind, name, m.name))
        sys.stderr.write("\n%s port garbage (server=%s):\n  %s\n" % (
            kind, CONFIG["server"], "\n  ".join(summary)))

    def test_client_port_garbage(self):
        self._garbage(lambda m: m.client_port, garbage_payloads(), "client")

    def test_peer_port_garbage(self):
        self._garbage(lambda m: m.peer_port, peer_payloads(), "peer")
        self.wait_hashkv_agree()

    def test_slow_and_abandoned_connections(self):
        """Half-sent prefaces and many idle connections must not stop the
        member serving others."""
        socks = []
        try:
            for m in self.c.members:
                for port in (m.client_port, m.peer_port):
                    for part in (H2_PREFACE[:10], b"GET /hea", b"\x16\x03",
                                 b""):
                        s = socket.create_connection(("127.0.0.1", port), 5)
                        if part:
                            s.sendall(part)
                        socks.append(s)
            self.assertServing("%d idle/half-open connections" % len(socks))
            # Garbage sent byte-wise (slow writer).
            reply, how = send_raw(self.c.members[0].client_port,
                                  H2_PREFACE + b"\x00\x00\x12\x04" * 20,
                                  chunked=True)
            self.assertServing("slow writer")
        finally:
            for s in socks:
                s.close()
        # Many short connections.
        for i in range(200):
            m = self.c.members[i % 3]
            s = socket.create_connection(("127.0.0.1", m.client_port if i % 2
                                          else m.peer_port), 5)
            s.close()
        self.assertServing("200 short connections")

    def wait_hashkv_agree(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            r = self.c.etcdctl(["endpoint", "hashkv", "--cluster", "-w",
                                "json"], members=self.c.members[:1])
            last = r
            if r.ok:
                rows = json.loads(r.out)
                if len(rows) == 3 and len({(x["HashKV"]["header"]["revision"],
                                            x["HashKV"]["hash"])
                                           for x in rows}) == 1:
                    return
            time.sleep(0.2)
        self.fail("members disagree after peer garbage:\n" + last.describe())


if __name__ == "__main__":
    cluster.main()
