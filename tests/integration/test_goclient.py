#!/usr/bin/env python3
"""Go clientv3 (etcd 3.4, Debian's golang-etcd-server-dev) against reference
etcd and the server under test: goclient/main.go `check` does puts, gets,
txns, watches (12000 of them on one stream too), leases, compaction,
limits, maintenance calls and the concurrency recipes (mutex, election,
STM), exiting non-zero with a FAIL line on the first surprise.

The client is built offline in GOPATH mode (GOPATH=/usr/share/gocode
GO111MODULE=off GOPROXY=off) unless --goclient gives a prebuilt binary.

Run alone:  python3 test_goclient.py --server build/detcd [-v]
"""

import sys

import cluster
from cluster import CONFIG, ClusterTestCase


class GoClient(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = cluster.goclient_binary()

    def check(self, c):
        r = cluster.run_goclient(["check", "-v", "-endpoints",
                                  ",".join(c.endpoints())])
        sys.stderr.write("\n" + r.out)
        self.assertEqual(r.rc, 0, "goclient check against %s:\n%s" % (
            c.label, r.describe()[-4000:]))
        self.assertIn("PASS", r.out)

    def test_reference_etcd(self):
        """Sanity: the checks hold for real etcd."""
        self.check(self.new_cluster(CONFIG["reference"], label="etcd"))

    def test_server_one_member(self):
        self.check(self.new_cluster(CONFIG["server"], label="server"))

    def test_server_three_members(self):
        self.check(self.new_cluster(CONFIG["server"], size=3, label="server"))


if __name__ == "__main__":
    cluster.main()
