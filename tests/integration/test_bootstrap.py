"""Static bootstrap: a 5-member cluster from --initial-cluster; member and
cluster ids derived as etcd derives them (checked against an oracle that
real etcd satisfies too: run this file with --server /usr/bin/etcd); writes
through any member (followers forward) are read on all; a member whose
name is not in --initial-cluster refuses to start, as etcd does.

Run alone: python3 tests/integration/test_bootstrap.py --server build/detcd
"""

import hashlib
import subprocess
import unittest

import cluster as it


def member_id(peer_urls, token):
    b = "".join(sorted(peer_urls)) + token
    return int.from_bytes(hashlib.sha1(b.encode()).digest()[:8], "big")


def cluster_id(ids):
    b = b"".join(i.to_bytes(8, "big") for i in sorted(ids))
    return int.from_bytes(hashlib.sha1(b).digest()[:8], "big")


class Bootstrap(it.ClusterTestCase):
    def test_five_members(self):
        c = self.new_cluster(it.CONFIG["server"], size=5)
        want = {m.name: member_id([m.peer_url], c.token) for m in c.members}
        r = c.ctl_ok(["member", "list", "-w", "json"])
        got = r.json()
        self.assertEqual({m["name"]: m["ID"] for m in got["members"]}, want)
        self.assertEqual(got["header"]["cluster_id"],
                         cluster_id(list(want.values())))
        for i, m in enumerate(c.members):  # every member takes writes
            c.ctl_ok(["put", "k%d" % i, "v%d" % i], members=[m])
        for m in c.members:
            r = c.ctl_ok(["get", "k", "--prefix", "--print-value-only"],
                         members=[m])
            self.assertEqual(r.out.split(), ["v%d" % i for i in range(5)])
        h = c.ctl_ok(["endpoint", "hashkv", "--cluster", "-w", "json"])
        self.assertEqual(len({e["HashKV"]["hash"] for e in h.json()}), 1)

    def test_name_not_in_initial_cluster(self):
        c = it.Cluster(it.CONFIG["server"], size=1)
        self.addCleanup(c.close)
        m = c.members[0]
        argv = [a if a != m.name else "stranger" for a in m.argv()]
        p = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20,
                           cwd=c.dir)
        self.assertNotEqual(p.returncode, 0)
        # etcd's text, in a JSON line (quotes escaped) or a capnslog line.
        text = p.stdout.decode(errors="replace").replace('\\"', '"')
        self.assertIn('couldn\'t find local name "stranger" in the initial '
                      'cluster configuration', text)


if __name__ == "__main__":
    it.main()
