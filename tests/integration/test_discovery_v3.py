"""Bootstrap by etcd 3.6's v3 discovery (--discovery-token,
--discovery-endpoints): the discovery service is a detcd member, then a
real etcd 3.4 (its v3 API); keys /_etcd/registry/<token>/_config/size and
/_etcd/registry/<token>/members/<member id hex>.

- three members with the same token and no --initial-cluster form one
  cluster (member list, endpoint status, put / get through each), each
  registered under its id (derived from the token, as etcd 3.6 does);
- a fourth is refused: "failed to join discovery cluster (discovery: cluster
  is full)" with etcd's warnings;
- a token without a size key: "discovery: size key not found";
- the flags' checks: a token without endpoints and the reverse, an empty
  endpoint, discovery-endpoints with --initial-cluster.

etcd 3.4 has no v3 discovery, so this file needs --server to be detcd.

Run alone: python3 tests/integration/test_discovery_v3.py --server build/detcd
"""

import base64
import hashlib
import subprocess
import uuid

import cluster as it
import test_discovery_lib as dl


def member_id(peer_urls, token):
    b = "".join(sorted(peer_urls)) + token
    return int.from_bytes(hashlib.sha1(b.encode()).digest()[:8], "big")


class V3Discovery(it.ClusterTestCase):
    def setUp(self):
        if not dl.is_detcd(it.CONFIG["server"]):
            self.skipTest("etcd 3.4 has no v3 discovery (--discovery-token)")

    def form_and_refuse(self, service):
        """Three members by discovery through `service`, then a fourth."""
        token = uuid.uuid4().hex
        prefix = "/_etcd/registry/%s" % token
        service.ctl_ok(["put", prefix + "/_config/size", "3"])
        flags = ["--discovery-token", token, "--discovery-endpoints",
                 ",".join(service.endpoints())]
        c = dl.discovery_cluster(self, it.CONFIG["server"], 3, flags)
        dl.start_all(c)
        got = dl.check_cluster_serves(self, c, [m.name for m in c.members])
        want = {m.name: member_id([m.peer_url], token) for m in c.members}
        self.assertEqual({m["name"]: m["ID"] for m in got["members"]}, want)
        r = service.ctl_ok(["get", prefix + "/members/", "--prefix", "-w",
                            "json"])
        reg = {base64.b64decode(kv["key"]).decode():
               base64.b64decode(kv["value"]).decode()
               for kv in r.json().get("kvs", [])}
        self.assertEqual(reg, {"%s/members/%x" % (prefix, want[m.name]):
                               "%s=%s" % (m.name, m.peer_url)
                               for m in c.members})

        extra = dl.discovery_cluster(self, it.CONFIG["server"], 1, flags)
        fourth = extra.members[0]
        fourth.start()
        self.assertEqual(dl.wait_exit(fourth), 1, fourth.log_tail())
        recs = dl.log_records(fourth.log_text())
        w = dl.find_record(
            recs, "failed to bootstrap; discovery token was already used")
        self.assertIsNotNone(w, fourth.log_tail())
        self.assertEqual(w["error"], "failed to join discovery cluster "
                                     "(discovery: cluster is full)")
        self.assertEqual(w["discovery-token"], token)
        c.ctl_ok(["put", "after", "full"])

    def test_served_by_detcd(self):
        service = self.new_cluster(it.CONFIG["server"], size=1,
                                   label="v3disc-detcd")
        self.form_and_refuse(service)

    def test_served_by_etcd(self):
        service = self.new_cluster(it.CONFIG["reference"], size=1,
                                   label="v3disc-etcd")
        self.form_and_refuse(service)

    def test_size_not_found(self):
        service = self.new_cluster(it.CONFIG["server"], size=1,
                                   label="v3disc-nosize")
        c = dl.discovery_cluster(
            self, it.CONFIG["server"], 1,
            ["--discovery-token", "no-such-token", "--discovery-endpoints",
             service.endpoints()[0]])
        m = c.members[0]
        m.start()
        self.assertEqual(dl.wait_exit(m), 1, m.log_tail())
        w = dl.find_record(
            dl.log_records(m.log_text()),
            "failed to bootstrap; discovery token was already used")
        self.assertIsNotNone(w, m.log_tail())
        self.assertEqual(w["error"], "failed to join discovery cluster "
                                     "(discovery: size key not found)")

    def test_flag_checks(self):
        detcd = it.CONFIG["server"]
        cases = [
            (["--discovery-token", "t"],
             "both --discovery-token and --discovery-endpoints must be set"),
            (["--discovery-endpoints", "127.0.0.1:1"],
             "both --discovery-token and --discovery-endpoints must be set"),
            (["--discovery-token", "t", "--discovery-endpoints", "a,,b"],
             "--discovery-endpoints must not contain empty endpoints"),
            (["--discovery-token", "t", "--discovery-endpoints", "a",
              "--initial-cluster", "x=http://127.0.0.1:1"],
             "multiple discovery or bootstrap flags are set. Choose one of "
             "\"initial-cluster\", \"discovery-endpoints\" or "
             "\"discovery-srv\""),
        ]
        for args, want in cases:
            p = subprocess.run([detcd] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=20)
            self.assertEqual(p.returncode, 1, (args, p.stdout))
            self.assertIn(want, p.stdout.decode(errors="replace"), args)


if __name__ == "__main__":
    it.main()
