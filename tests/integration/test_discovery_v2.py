"""Bootstrap by URL discovery (--discovery): etcd 3.4's v2 discovery protocol
against a real etcd 3.4 started with --enable-v2 as the discovery service,
nothing mocked.

- three members started with the same discovery URL and no
  --initial-cluster form one cluster: member list, endpoint status and a
  put / get through each member, member ids derived from the discovery URL
  as etcd derives them;
- a fourth is refused as etcd refuses it ("discovery: cluster is full",
  etcd's warnings; with --discovery-fallback=proxy detcd, which has no v2
  proxy, says so and exits), side by side with a real etcd 3.4 fourth;
- two members of one name fail with "discovery: found duplicate name";
- a member registered before whose data dir is gone fails with
  "discovery: found duplicate id".

Run alone: python3 tests/integration/test_discovery_v2.py --server build/detcd
(--server /usr/bin/etcd runs the same checks on etcd, except detcd's own
proxy refusal).
"""

import hashlib
import shutil
import signal
import socket
import urllib.parse
import urllib.request
import uuid

import cluster as it
import test_discovery_lib as dl


def member_id(peer_urls, token):
    b = "".join(sorted(peer_urls)) + token
    return int.from_bytes(hashlib.sha1(b.encode()).digest()[:8], "big")


class V2Discovery(it.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        # The discovery service: a real etcd 3.4 serving the v2 keys API.
        cls.disc = cls.new_class_cluster(it.CONFIG["reference"], size=1,
                                         extra_flags=["--enable-v2"],
                                         label="discovery")
        cls.disc.start()
        cls.base = "http://127.0.0.1:%d" % cls.disc.members[0].client_port

    def new_token(self, size):
        """A fresh discovery URL whose _config/size is `size`."""
        url = "%s/v2/keys/discovery/%s" % (self.base, uuid.uuid4().hex)
        req = urllib.request.Request(
            url + "/_config/size", method="PUT",
            data=urllib.parse.urlencode({"value": str(size)}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertIn(r.status, (200, 201))
        return url

    def test_three_members_then_full(self):
        durl = self.new_token(3)
        server = it.CONFIG["server"]
        c = dl.discovery_cluster(self, server, 3, ["--discovery", durl])
        dl.start_all(c)
        got = dl.check_cluster_serves(self, c, [m.name for m in c.members])
        # Ids as etcd derives them: the discovery URL is the cluster token.
        self.assertEqual({m["name"]: m["ID"] for m in got["members"]},
                         {m.name: member_id([m.peer_url], durl)
                          for m in c.members})

        # A fourth member: the cluster is full.
        extra = dl.discovery_cluster(
            self, server, 1,
            ["--discovery", durl, "--discovery-fallback", "exit"])
        fourth = extra.members[0]
        fourth.start()
        self.assertEqual(dl.wait_exit(fourth), 1, fourth.log_tail())
        ours = dl.log_records(fourth.log_text())
        warn = dl.find_record(
            ours, "failed to bootstrap; discovery token was already used")
        self.assertIsNotNone(warn, fourth.log_tail())
        self.assertEqual(warn["error"],
                         "failed to join discovery cluster "
                         "(discovery: cluster is full)")
        self.assertEqual(warn["discovery-token"], durl)
        self.assertIsNotNone(dl.find_record(
            ours, "do not reuse discovery token; generate a new one to "
                  "bootstrap a cluster"))

        # Real etcd 3.4 as the fourth says the same.
        ref = dl.discovery_cluster(
            self, it.CONFIG["reference"], 1,
            ["--discovery", durl, "--discovery-fallback", "exit"])
        ref.members[0].start()
        self.assertEqual(dl.wait_exit(ref.members[0]), 1)
        theirs = dl.find_record(
            dl.log_records(ref.members[0].log_text()),
            "failed to bootstrap; discovery token was already used")
        self.assertIsNotNone(theirs, ref.members[0].log_tail())
        self.assertEqual(theirs["error"], warn["error"])

        # Default fallback (proxy): etcd would become a v2 proxy; detcd
        # has none and says so.
        if dl.is_detcd(server):
            proxy = dl.discovery_cluster(self, server, 1, ["--discovery", durl])
            p = proxy.members[0]
            p.start()
            self.assertEqual(dl.wait_exit(p), 1, p.log_tail())
            recs = dl.log_records(p.log_text())
            fall = dl.find_record(
                recs, "discovery cluster is full, falling back to proxy")
            self.assertIsNotNone(fall, p.log_tail())
            fatal = dl.find_record(recs, "discovery failed")
            self.assertIn("detcd does not serve etcd's v2 API",
                          fatal["error"])
            self.assertIn("--discovery-fallback=proxy", fatal["error"])

        # The cluster is unharmed; a restarted member comes back from its
        # data dir (discovery is not asked again).
        c.ctl_ok(["put", "after", "full"])
        c.members[0].restart()
        c.wait_healthy()
        r = c.ctl_ok(["get", "after", "--print-value-only"],
                     members=[c.members[0]])
        self.assertEqual(r.out.strip(), "full")

    def test_discovery_proxy(self):
        # --discovery-proxy: requests go to the proxy, in proxy form
        # (absolute URL). Ours answers 503, which discovery retries.
        durl = self.new_token(3)
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(20)
        self.addCleanup(srv.close)
        c = dl.discovery_cluster(
            self, it.CONFIG["server"], 1,
            ["--discovery", durl, "--discovery-proxy",
             "127.0.0.1:%d" % srv.getsockname()[1]])
        m = c.members[0]
        m.start()
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        first = head.split(b"\r\n", 1)[0].decode()
        self.assertTrue(first.startswith("GET %s/_config/size?" % durl),
                        first)
        retried = dl.wait_for(lambda: dl.find_record(
            dl.log_records(m.log_text()),
            "failed to get from discovery server"), timeout=10)
        self.assertIsNotNone(retried, m.log_tail())
        m.kill()

    def test_duplicate_name(self):
        durl = self.new_token(2)
        c = dl.discovery_cluster(
            self, it.CONFIG["server"], 2,
            ["--discovery", durl, "--discovery-fallback", "exit"],
            names=["same", "same"])
        for m in c.members:
            m.start()
        for m in c.members:
            self.assertEqual(dl.wait_exit(m), 1, m.log_tail())
            recs = dl.log_records(m.log_text())
            w = dl.find_record(
                recs, "member with duplicated name has already been "
                      "registered")
            self.assertIsNotNone(w, m.log_tail())
            self.assertEqual(w["error"], "discovery: found duplicate name")
            self.assertEqual(w["discovery-token"], durl)
            self.assertIsNotNone(dl.find_record(
                recs, "cURL the discovery token URL for details"))

    def test_duplicate_id(self):
        # A member registers, then loses its data dir before the cluster
        # formed: starting it again finds its own id taken.
        durl = self.new_token(3)
        c = dl.discovery_cluster(
            self, it.CONFIG["server"], 1,
            ["--discovery", durl, "--discovery-fallback", "exit"])
        m = c.members[0]
        m.start()
        key = "%s/%x" % (durl, member_id([m.peer_url], durl))
        registered = dl.wait_for(lambda: self._exists(key), timeout=20)
        self.assertTrue(registered, m.log_tail())
        # SIGTERM while discovery waits for peers ends the process by the
        # signal, as it ends etcd then.
        self.assertEqual(m.terminate(timeout=10), -signal.SIGTERM,
                         m.log_tail())
        shutil.rmtree(m.data_dir, ignore_errors=True)
        m.start()
        self.assertEqual(dl.wait_exit(m), 1, m.log_tail())
        recs = dl.log_records(m.log_text())
        w = dl.find_record(recs,
                           "member has been registered with discovery service")
        self.assertIsNotNone(w, m.log_tail())
        self.assertEqual(w["error"], "discovery: found duplicate id")
        self.assertEqual(w["name"], m.name)
        self.assertIsNotNone(dl.find_record(
            recs, "or use a new discovery token if previous bootstrap failed"))

    @staticmethod
    def _exists(url):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status == 200
        except OSError:
            return False


if __name__ == "__main__":
    it.main()
