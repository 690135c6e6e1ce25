#!/usr/bin/env python3
"""Large ranges, on detcd beside real etcd 3.4.

detcd reads a large range in pieces between its other work, at the
revision its first piece read, and encodes a large answer off the engine
thread. The same 40000 keys are written to both servers by the same txns
(so the revisions match), then:

- whole-prefix reads (all, keys only, a sorted top-10) give the same
  key-values on both;
- reads made while puts go on are each one consistent revision: every
  key-value's mod revision is at most the header's, the count matches the
  key-values, and a key rewritten during the read shows its value of that
  revision, never a later one;
- a member stopped (SIGTERM) while several such reads are in flight exits
  within a bound (one whose answers were being encoded hung once);
- on detcd, the same with gRPC C++ serving (--native-grpc=false), whose
  Finish encodes a large answer on the encoder thread, and the whole
  prefix read through the JSON gateway gives etcd's gateway answer.

Run alone:  python3 test_big_range.py --server build/detcd [-v]
"""

import base64
import concurrent.futures
import http.client
import threading
import time

import cluster
from cluster import CONFIG, ClusterTestCase, b64
from cluster import gateway_post as post

KEYS = 40000
PER_TXN = 100
VALUE = "v" * 100
EXIT_BOUND_S = 20.0




def fill(endpoint):
    host, port = endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for first in range(0, KEYS, PER_TXN):
            ops = [{"request_put": {"key": b64("big/%06d" % i),
                                    "value": b64(VALUE)}}
                   for i in range(first, first + PER_TXN)]
            post(conn, "/v3/kv/txn", {"success": ops})
    finally:
        conn.close()


def kvs_of(result):
    """The key-values of an etcdctl -w json result or a gateway answer."""
    answer = result if isinstance(result, dict) else result.json()
    return [(base64.b64decode(kv["key"]), kv.get("create_revision"),
             kv.get("mod_revision"), kv.get("version"),
             base64.b64decode(kv.get("value", "")))
            for kv in answer.get("kvs", [])]


class BigRange(ClusterTestCase):

    def reads(self, c):
        out = {}
        for name, extra in (
                ("all", []),
                ("keys-only", ["--keys-only"]),
                # (Keys are unique: by mod revision the 100 keys of one
                # txn tie, and etcd orders ties as Go's unstable sort
                # leaves them.)
                ("top10", ["--sort-by=KEY", "--order=DESCEND",
                           "--limit", "10"])):
            r = c.ctl_ok(["get", "big/", "--prefix", "-w", "json"] + extra,
                         timeout=60)
            out[name] = (r.json().get("count"), r.json().get("more", False),
                         kvs_of(r))
        return out

    def consistent_reads_under_puts(self, c):
        ep = c.endpoints()[0]
        stop = threading.Event()

        def writer():
            host, port = ep.split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            n = 0
            try:
                while not stop.is_set():
                    post(conn, "/v3/kv/put",
                         {"key": b64("big/%06d" % (n * 7919 % KEYS)),
                          "value": b64("w%d" % n)})
                    n += 1
            finally:
                conn.close()
            return n

        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            w = ex.submit(writer)
            try:
                for _ in range(3):
                    r = c.ctl_ok(["get", "big/", "--prefix", "-w", "json"],
                                 timeout=60)
                    res = r.json()
                    rev = int(res["header"]["revision"])
                    kvs = res.get("kvs", [])
                    self.assertEqual(int(res["count"]), KEYS)
                    self.assertEqual(len(kvs), KEYS)
                    late = [kv for kv in kvs
                            if int(kv["mod_revision"]) > rev]
                    self.assertEqual(late, [], "%s: key-values newer than "
                                     "the header revision %d" % (c.label,
                                                                 rev))
            finally:
                stop.set()
                puts = w.result()
        self.assertGreater(puts, 0)

    def stop_during_reads(self, c):
        m = c.members[0]
        bgs = [c.background(["get", "big/", "--prefix", "-w", "json"])
               for _ in range(4)]
        time.sleep(0.3)
        t0 = time.monotonic()
        rc = m.terminate(timeout=EXIT_BOUND_S)
        took = time.monotonic() - t0
        for b in bgs:
            b.stop()
        self.assertLess(took, EXIT_BOUND_S,
                        "%s: did not exit within %.0f s of SIGTERM during "
                        "large reads (rc %s)" % (c.label, EXIT_BOUND_S, rc))

    def gateway_read(self, c):
        host, port = c.endpoints()[0].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            r = post(conn, "/v3/kv/range",
                     {"key": b64("big/"), "range_end": b64("big0")})
        finally:
            conn.close()
        return (r.get("count"), kvs_of(r))

    def run_one(self, config, label, **kw):
        c = self.new_cluster(config, label=label, **kw)
        fill(c.endpoints()[0])
        got = self.reads(c)
        got["gateway"] = self.gateway_read(c)
        count, more, kvs = got["all"]
        self.assertEqual(count, KEYS)
        self.assertEqual(len(kvs), KEYS)
        self.assertEqual(kvs[0][0], b"big/000000")
        self.assertEqual(kvs[-1][4], VALUE.encode())
        self.assertEqual(got["top10"][1], True)
        self.assertEqual(len(got["top10"][2]), 10)
        self.consistent_reads_under_puts(c)
        self.stop_during_reads(c)
        return got

    def test_same_answers_as_etcd(self):
        want = self.run_one(CONFIG["reference"], "etcd")
        got = self.run_one(CONFIG["server"], "server")
        for name in want:
            self.assertEqual(got[name], want[name], name)
        got = self.run_one(CONFIG["server"], "server, gRPC C++",
                           extra_flags=["--native-grpc=false"])
        for name in want:
            self.assertEqual(got[name], want[name], name + " (gRPC C++)")


if __name__ == "__main__":
    cluster.main()
