"""Bootstrap by DNS SRV discovery (--discovery-srv, --discovery-srv-name)
against a real DNS server: dnsmasq serving SRV and A records on 127.0.0.1:53
inside a private network namespace whose /etc/netns/<ns>/resolv.conf names
it (`ip netns exec` bind-mounts that file over /etc/resolv.conf), so the
members, etcdctl and detcdctl all resolve through it. The test sets this
up and tears it down itself; it needs root and network namespaces, and
exits 77 (ctest: skipped) with the reason when it cannot have them.

- three members advertise http://127.0.0.1:<port> while the SRV records name
  m<i>.detcd.test:<port>; each finds itself among the records by address and
  they form one cluster (member list with the records' URLs, ids from them,
  endpoint status, put / get through each);
- detcdctl --discovery-srv finds the client endpoints (_etcd-client._tcp),
  as etcdctl does;
- failures give etcd's messages: no SRV records (also with
  --discovery-srv-name, which suffixes the services), this member's URL not
  among them; detcdctl's "dns lookup errors" equal etcdctl's;
- a member replaced with a wiped disk (member remove, member add with its
  record's URL, restarted empty with --initial-cluster-state existing and
  still only --discovery-srv) joins the running cluster with the view the
  SRV records give, as etcd's PeerURLsMapAndToken builds it;
- https peers found by _etcd-server-ssl._tcp records: the peer certificate
  names only the SRV domain (not the records' host names, not 127.0.0.1)
  and no --peer-trusted-ca-file is given (the CA is the system's, through
  SSL_CERT_FILE), so the cluster forms only if peers check certificates
  against the SRV domain, as etcd does (its PeerTLSInfo.ServerName); etcd
  3.4 and detcd each form a cluster that way.

Run alone (as root): python3 tests/integration/test_discovery_srv.py
  --server build/detcd --detcdctl build/detcdctl
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import cluster as it
import test_discovery_lib as dl

DOMAIN = "detcd.test"
# One SRV domain per binary for the https test (both in the certificate).
TLS_DOMAINS = {"etcd": "etcd-tls.detcd.test", "detcd": "detcd-tls.detcd.test"}
DETCDCTL = os.environ.get("DETCD_DETCDCTL", "")


def take_detcdctl_arg():
    """Removes --detcdctl PATH from sys.argv (cluster.main parses the rest)."""
    global DETCDCTL
    argv, args = [], iter(sys.argv)
    for a in args:
        if a == "--detcdctl":
            DETCDCTL = os.path.abspath(next(args, ""))
        elif a.startswith("--detcdctl="):
            DETCDCTL = os.path.abspath(a.split("=", 1)[1])
        else:
            argv.append(a)
    sys.argv = argv


def member_id(peer_urls, token):
    b = "".join(sorted(peer_urls)) + token
    return int.from_bytes(hashlib.sha1(b.encode()).digest()[:8], "big")


class NetNsDns:
    """A network namespace with its own loopback and dnsmasq on 127.0.0.1:53
    as its resolver. run()/argv() put commands inside it."""

    def __init__(self):
        self.name = "detcd-it-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
        self.etc_dir = os.path.join("/etc/netns", self.name)
        self.dir = tempfile.mkdtemp(prefix="detcd-it-dns-")
        self.dnsmasq = None
        self.created = False

    def argv(self, argv):
        return ["ip", "netns", "exec", self.name] + list(argv)

    def setup(self):
        """Creates the namespace; returns None, or why it cannot."""
        if os.geteuid() != 0:
            return "needs root (network namespaces, /etc/netns)"
        for tool in ("ip", "dnsmasq"):
            if shutil.which(tool) is None and not os.path.exists(
                    "/usr/sbin/" + tool):
                return "%s is not installed (apt-get install iproute2 " \
                       "dnsmasq-base)" % tool
        p = subprocess.run(["ip", "netns", "add", self.name],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            return "cannot create a network namespace: %s" % \
                p.stdout.decode(errors="replace").strip()
        self.created = True
        subprocess.run(self.argv(["ip", "link", "set", "lo", "up"]),
                       check=True)
        os.makedirs(self.etc_dir, exist_ok=True)
        with open(os.path.join(self.etc_dir, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
        return None

    def serve(self, srv, hosts):
        """Starts dnsmasq with srv = [(name, target, port)] and hosts =
        [(name, ip)]; authoritative for .test (unknown names: NXDOMAIN)."""
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--user=root",
                "--listen-address=127.0.0.1", "--bind-interfaces",
                "--port=53", "--local=/test/",
                "--log-queries", "--log-facility=" +
                os.path.join(self.dir, "dnsmasq.log")]
        args += ["--srv-host=%s,%s,%d,0,0" % r for r in srv]
        args += ["--host-record=%s,%s" % h for h in hosts]
        err_path = os.path.join(self.dir, "dnsmasq.stderr")
        with open(err_path, "w") as err:
            self.dnsmasq = subprocess.Popen(
                self.argv(args), stdout=subprocess.DEVNULL, stderr=err,
                preexec_fn=it._die_with_parent)
        probe = hosts[0][0]
        # One lookup may take 8 s when a query is lost (resolv.conf above:
        # 2 s, 2 attempts, A and AAAA), as the first ones can be while
        # dnsmasq starts on a loaded machine: room for several.
        ok = dl.wait_for(lambda: subprocess.run(
            self.argv(["getent", "hosts", probe]),
            stdout=subprocess.DEVNULL).returncode == 0, timeout=40)
        if not ok:
            with open(err_path) as err:
                raise RuntimeError("dnsmasq in %s does not answer (exit %s): %s"
                                   % (self.name, self.dnsmasq.poll(),
                                      err.read()[-2000:]))

    def close(self):
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.kill()
            self.dnsmasq.wait()
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.created = False
        shutil.rmtree(self.etc_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class NsMember(dl.DiscoveryMember):
    """A member started inside the namespace."""

    ns = None

    def argv(self):
        return self.ns.argv(super().argv())


class TlsNsMember(NsMember):
    """A member with https peer URLs and a peer certificate, started with
    SSL_CERT_FILE naming the test CA (the system's roots, for Go and for
    OpenSSL alike)."""

    tls_flags = []
    ca_file = None

    @property
    def peer_url(self):
        return "https://127.0.0.1:%d" % self.peer_port

    def argv(self):
        return self.ns.argv(dl.DiscoveryMember.argv(self) + self.tls_flags)

    def start(self):
        saved = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = self.ca_file
        try:
            super().start()
        finally:
            if saved is None:
                del os.environ["SSL_CERT_FILE"]
            else:
                os.environ["SSL_CERT_FILE"] = saved


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_domain_pki(d, names):
    """A CA and a server+client certificate whose only SANs are `names`."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=srv-test-ca",
            cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n"
                % ",".join("DNS:" + n for n in names))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "peer.key",
            "-out", "peer.csr", "-subj", "/CN=" + names[0], cwd=d)
    openssl("x509", "-req", "-in", "peer.csr", "-CA", "ca.crt", "-CAkey",
            "ca.key", "-CAcreateserial", "-days", "2", "-out", "peer.crt",
            "-extfile", "ext.cnf", cwd=d)
    return {k: os.path.join(d, v) for k, v in
            (("ca", "ca.crt"), ("cert", "peer.crt"), ("key", "peer.key"))}


class SrvDiscovery(it.ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ns = NsDns
        cls.cluster_ports = it.free_ports(6)
        ports = cls.cluster_ports
        # Records for a three-member cluster on ports[2i] (client) and
        # ports[2i+1] (peer) of 127.0.0.1, named m<i>.detcd.test.
        srv, hosts = [], []
        for i in range(3):
            host = "m%d.%s" % (i, DOMAIN)
            srv.append(("_etcd-server._tcp." + DOMAIN, host, ports[2 * i + 1]))
            srv.append(("_etcd-client._tcp." + DOMAIN, host, ports[2 * i]))
            hosts.append((host, "127.0.0.1"))
        # https peers: _etcd-server-ssl records only, per binary's domain,
        # targets s<i>.<domain>.
        cls.tls_ports = {}
        for label, domain in sorted(TLS_DOMAINS.items()):
            tp = it.free_ports(6)
            cls.tls_ports[label] = tp
            for i in range(3):
                host = "s%d.%s" % (i, domain)
                srv.append(("_etcd-server-ssl._tcp." + domain, host,
                            tp[2 * i + 1]))
                hosts.append((host, "127.0.0.1"))
        cls.ns.serve(srv, hosts)
        # etcdctl through cluster.py's helpers runs inside the namespace.
        cls.saved_etcdctl = it.CONFIG["etcdctl"]
        cls.wrapper = os.path.join(cls.ns.dir, "etcdctl-in-ns")
        with open(cls.wrapper, "w") as f:
            f.write("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n" %
                    (cls.ns.name, cls.saved_etcdctl))
        os.chmod(cls.wrapper, 0o755)
        it.CONFIG["etcdctl"] = cls.wrapper
        NsMember.ns = cls.ns

    @classmethod
    def tearDownClass(cls):
        it.CONFIG["etcdctl"] = cls.saved_etcdctl
        super().tearDownClass()

    def srv_cluster(self, size, flags, ports=None):
        c = it.Cluster(it.CONFIG["server"], size=size, label="srv")
        self._test_clusters.append(c)
        self.addCleanup(c.close)
        ports = ports or self.cluster_ports
        # The cluster token still seeds the ids with SRV discovery.
        flags = list(flags) + ["--initial-cluster-token", c.token]
        c.members = [NsMember(c, i, ports[2 * i], ports[2 * i + 1], flags)
                     for i in range(size)]
        return c

    def failing_member(self, flags, ports):
        c = self.srv_cluster(1, flags, ports=ports)
        m = c.members[0]
        m.name = "m9"
        m.start()
        self.assertEqual(dl.wait_exit(m), 1, m.log_tail())
        fatal = dl.find_record(dl.log_records(m.log_text()), "discovery failed")
        self.assertIsNotNone(fatal, m.log_tail())
        return fatal["error"]

    def ctl(self, binary, args):
        return subprocess.run(self.ns.argv([binary] + args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=it.etcdctl_env(), timeout=30)

    def test_three_members(self):
        c = self.srv_cluster(3, ["--discovery-srv", DOMAIN])
        dl.start_all(c)
        got = dl.check_cluster_serves(self, c, [m.name for m in c.members])
        # Members carry the records' URLs; ids derive from them.
        srv_url = {m.name: "http://m%d.%s:%d" % (m.index, DOMAIN, m.peer_port)
                   for m in c.members}
        self.assertEqual({m["name"]: m["peerURLs"] for m in got["members"]},
                         {n: [u] for n, u in srv_url.items()})
        self.assertEqual({m["name"]: m["ID"] for m in got["members"]},
                         {n: member_id([u], c.token)
                          for n, u in srv_url.items()})
        log = dl.log_records(c.members[0].log_text())
        self.assertIsNotNone(dl.find_record(
            log, "got bootstrap from DNS for etcd-server"))

        # Clients find the endpoints by SRV too (no --endpoints: the
        # default 127.0.0.1:2379 serves nothing here).
        tools = [("etcdctl", self.saved_etcdctl)]
        if DETCDCTL:
            tools.append(("detcdctl", DETCDCTL))
        for label, tool in tools:
            p = self.ctl(tool, ["--discovery-srv", DOMAIN, "get", "disc/",
                                "--prefix", "--print-value-only"])
            self.assertEqual(p.returncode, 0, (label, p.stderr))
            self.assertEqual(p.stdout.decode().split(), ["v0", "v1", "v2"],
                             label)
            p = self.ctl(tool, ["--discovery-srv", DOMAIN, "put", "via",
                                label])
            self.assertEqual(p.returncode, 0, (label, p.stderr))

    def test_no_records(self):
        ports = it.free_ports(2)
        err = self.failing_member(["--discovery-srv", "nope." + DOMAIN], ports)
        self.assertEqual(
            err,
            "error setting up initial cluster: error querying DNS SRV records "
            "for _etcd-server-ssl lookup _etcd-server-ssl._tcp.nope.%s on "
            "127.0.0.1:53: no such host; error querying DNS SRV records for "
            "_etcd-server lookup _etcd-server._tcp.nope.%s on 127.0.0.1:53: "
            "no such host" % (DOMAIN, DOMAIN))
        err = self.failing_member(["--discovery-srv", DOMAIN,
                                   "--discovery-srv-name", "red"], ports)
        self.assertIn("_etcd-server-ssl-red._tcp.%s" % DOMAIN, err)
        self.assertIn("error querying DNS SRV records for _etcd-server-red "
                      "lookup _etcd-server-red._tcp.%s" % DOMAIN, err)

    def test_member_not_in_records(self):
        err = self.failing_member(["--discovery-srv", DOMAIN],
                                  it.free_ports(2))
        self.assertEqual(err, "error setting up initial cluster: cannot find "
                              "local etcd member \"m9\" in SRV records")

    def test_replaced_member_joins_by_srv(self):
        c = self.srv_cluster(3, ["--discovery-srv", DOMAIN])
        dl.start_all(c)
        m2 = c.members[2]
        url = "http://m2.%s:%d" % (DOMAIN, m2.peer_port)
        ids = {m["name"]: int(m["ID"]) for m in
               c.ctl_ok(["member", "list", "-w", "json"]).json()["members"]}
        live = c.members[:2]
        # Strict reconfiguration wants links older than etcd's 5 s health
        # interval: retry while it says the cluster is unhealthy.
        def retry(args):
            deadline = time.monotonic() + 20
            while True:
                r = c.etcdctl(args, members=live)
                if r.ok or "unhealthy cluster" not in r.err or \
                        time.monotonic() > deadline:
                    return r
                time.sleep(0.25)
        r = retry(["member", "remove", "%x" % ids["m2"]])
        self.assertTrue(r.ok, r.describe())
        self.assertEqual(dl.wait_exit(m2), 0, m2.log_tail())
        r = retry(["member", "add", "m2", "--peer-urls", url])
        self.assertTrue(r.ok, r.describe())
        shutil.rmtree(m2.data_dir)
        argv = m2.argv
        m2.argv = lambda: ["existing" if a == "new" else a for a in argv()]
        m2.start()
        c.wait_healthy(members=[m2], timeout=30)
        c.ctl_ok(["put", "replaced", "yes"], members=[m2])
        r = c.ctl_ok(["get", "replaced", "--print-value-only",
                      "--consistency=s"], members=[m2])
        self.assertEqual(r.out.strip(), "yes")
        deadline = time.monotonic() + 15
        while True:
            got = {m.get("name", ""): m["peerURLs"] for m in
                   c.ctl_ok(["member", "list", "-w", "json"])
                   .json()["members"]}
            if "m2" in got or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(got.get("m2"), [url])
        self.assertIn("--initial-cluster-state existing",
                      m2.log_text().split("===== start #")[-1])

    def test_https_peers_checked_against_srv_domain(self):
        pki = make_domain_pki(self.ns.dir, sorted(TLS_DOMAINS.values()))
        TlsNsMember.ca_file = pki["ca"]
        TlsNsMember.tls_flags = ["--peer-cert-file", pki["cert"],
                                 "--peer-key-file", pki["key"]]
        for label, binary in (("etcd", it.CONFIG["reference"]),
                              ("detcd", it.CONFIG["server"])):
            domain, ports = TLS_DOMAINS[label], self.tls_ports[label]
            c = it.Cluster(binary, size=3, label="srv-tls")
            self._test_clusters.append(c)
            self.addCleanup(c.close)
            flags = ["--discovery-srv", domain,
                     "--initial-cluster-token", c.token]
            TlsNsMember.ns = self.ns
            c.members = [TlsNsMember(c, i, ports[2 * i], ports[2 * i + 1],
                                     flags) for i in range(3)]
            dl.start_all(c)
            got = dl.check_cluster_serves(self, c, [m.name for m in c.members])
            self.assertEqual(
                sorted(u for m in got["members"] for u in m["peerURLs"]),
                sorted("https://s%d.%s:%d" % (i, domain, ports[2 * i + 1])
                       for i in range(3)), label)
            c.close()

    def test_client_lookup_errors_match_etcdctl(self):
        args = ["--discovery-srv", "nope." + DOMAIN, "get", "x"]
        theirs = self.ctl(self.saved_etcdctl, args)
        self.assertEqual(theirs.returncode, 1)
        self.assertIn(b"dns lookup errors: lookup _etcd-client-ssl._tcp.nope.",
                      theirs.stderr)
        if not DETCDCTL:
            self.skipTest("no --detcdctl given")
        ours = self.ctl(DETCDCTL, args)
        self.assertEqual((ours.returncode, ours.stderr),
                         (theirs.returncode, theirs.stderr))


NsDns = None

if __name__ == "__main__":
    take_detcdctl_arg()
    NsDns = NetNsDns()
    why = NsDns.setup()
    if why is not None:
        NsDns.close()
        sys.stderr.write("SKIP test_discovery_srv: %s\n" % why)
        sys.exit(77)
    try:
        it.main()
    finally:
        NsDns.close()
