#!/usr/bin/env python3
"""Many leases expiring together, on detcd beside real etcd 3.4.

3000 leases of TTL 3 s are granted at once through the JSON gateway, one
key attached to each; nobody keeps them alive. etcd's leader revokes
expired leases at up to 1000 a second (500 per 500 ms loop), so on etcd
every key is gone a few seconds after the TTL. The test waits (bounded)
until the keys and the leases are all gone and fails if that takes more
than REVOKE_BOUND_S after the last lease's TTL passed: a member that
revoked 16 per loop (32 a second) needed about a minute and a half.

Run alone:  python3 test_lease_expiry.py --server build/detcd [-v]
"""

import concurrent.futures
import http.client
import sys
import time

import cluster
from cluster import CONFIG, ClusterTestCase, b64
from cluster import gateway_post as post

LEASES = 3000
TTL_S = 3
# etcd 3.4 takes ~3-4 s for 3000; 10x that leaves room for a loaded machine.
REVOKE_BOUND_S = 30.0




def grant_with_keys(endpoint, first, count):
    host, port = endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for i in range(first, first + count):
            lease = post(conn, "/v3/lease/grant", {"TTL": TTL_S})["ID"]
            post(conn, "/v3/kv/put", {"key": b64("exp/%05d" % i),
                                      "value": b64("v"), "lease": lease})
    finally:
        conn.close()


def counts(endpoint):
    """(keys under exp/, leases held)."""
    host, port = endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        r = post(conn, "/v3/kv/range", {"key": b64("exp/"),
                                        "range_end": b64("exp0"),
                                        "count_only": True})
        leases = post(conn, "/v3/lease/leases", {}).get("leases", [])
        return int(r.get("count", 0)), len(leases)
    finally:
        conn.close()


class LeaseExpiry(ClusterTestCase):

    def check(self, c):
        ep = c.endpoints()[0]
        workers = 4
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(workers) as ex:
            per = LEASES // workers
            list(ex.map(lambda w: grant_with_keys(ep, w * per, per),
                        range(workers)))
        granted = time.monotonic()
        keys, leases = counts(ep)
        # Some may have expired already on a slow machine; most are there.
        self.assertGreater(keys, 0, "no key with a lease right after")
        expired_by = granted + TTL_S
        deadline = expired_by + REVOKE_BOUND_S
        while True:
            keys, leases = counts(ep)
            if keys == 0 and leases == 0:
                break
            self.assertLess(
                time.monotonic(), deadline,
                "%s: %d keys and %d leases left %.1f s after the last TTL "
                "passed (granted in %.1f s)" % (
                    c.label, keys, leases, time.monotonic() - expired_by,
                    granted - t0))
            time.sleep(0.2)
        sys.stderr.write("\n%s: %d leases granted with keys in %.1f s, all "
                         "revoked %.1f s after the last TTL passed\n" % (
                             c.label, LEASES, granted - t0,
                             time.monotonic() - expired_by))
        self.assertTrue(all(m.alive() for m in c.members))

    def test_reference_etcd(self):
        self.check(self.new_cluster(CONFIG["reference"], label="etcd"))

    def test_server(self):
        self.check(self.new_cluster(CONFIG["server"], label="server"))


if __name__ == "__main__":
    cluster.main()
