#!/usr/bin/env python3
"""--host-whitelist (issue 15), detcd next to etcd 3.4.

etcd 3.4 checks the Host of every plain-HTTP request on its client URLs
(embed/serve.go, accessController; CVE-2018-5702): the host name without its
port must be in the list, unless the list holds "*" (the default) or is
empty. Others get 421 with Go's http.Error shape and etcd's text naming the
host, and a warning "rejecting HTTP request to prevent DNS rebinding
attacks" in the log. gRPC is not HTTP/1.1 and is not checked.

Both servers run with --host-whitelist example.com,[::1]:
- Host 127.0.0.1:<port> (curl's and urllib's default): 421 on /health,
  /version and the JSON gateway, same status, body and content type;
- Host example.com, example.com:<any port> and an absolute-form target
  naming example.com: served;
- etcdctl (gRPC) works;
- both logs carry the warning naming the host.
And the default (no flag) serves any host; --host-whitelist '' is the list
{""} on both (only requests without a host pass).

Run alone:  python3 test_host_whitelist.py --server build/detcd [-v]
"""

import http.client
import json
import socket
import time

import cluster
from cluster import CONFIG, ClusterTestCase


def request(port, method, target, host, body=None):
    """(status, content type, body text) of one request with this Host."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.putrequest(method, target, skip_host=True,
                        skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        data = body.encode() if body is not None else None
        if data is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        conn.close()


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


class HostWhitelist(ClusterTestCase):

    def test_whitelist_like_etcd(self):
        flags = ["--host-whitelist", "example.com,::1"]
        sides = {
            "etcd": self.new_cluster(CONFIG["reference"], label="etcd",
                                     extra_flags=flags),
            "detcd": self.new_cluster(CONFIG["server"], label="detcd",
                                      extra_flags=flags),
        }
        answers = {}
        for name, c in sides.items():
            m = c.members[0]
            port = m.client_port
            got = {}
            for path in ("/health", "/version"):
                got[path] = request(port, "GET", path, "127.0.0.1:%d" % port)
            got["gateway"] = request(port, "POST", "/v3/kv/range",
                                     "127.0.0.1:%d" % port, '{"key":"YQ=="}')
            got["no-port"] = request(port, "GET", "/health", "localhost")
            for what, (status, ctype, body) in got.items():
                self.assertEqual(status, 421, (name, what, body))
                self.assertEqual(ctype, "text/plain; charset=utf-8",
                                 (name, what))
            answers[name] = got
            # Whitelisted names, with or without a port, and an
            # absolute-form target (its authority is the host, as Go's).
            for host in ("example.com", "example.com:1", "[::1]:2379"):
                status, _, body = request(port, "GET", "/health", host)
                self.assertEqual(status, 200, (name, host, body))
                self.assertEqual(json.loads(body)["health"], "true")
            status, _, body = request(
                port, "GET", "http://example.com/health", "127.0.0.1")
            self.assertEqual(status, 200, (name, body))
            status, _, body = request(port, "POST", "/v3/kv/range",
                                      "example.com", '{"key":"YQ=="}')
            self.assertEqual(status, 200, (name, body))
            self.assertIn('"header"', body)
            # gRPC is not checked.
            c.ctl_ok(["put", "k", "v"])
            self.assertIn("v", c.ctl_ok(["get", "k"]).out)
            # etcd 3.4's capnslog line and its zap line differ; both say
            # why and name the host.
            self.assertTrue(wait_for(
                lambda: "to prevent DNS rebinding attacks" in m.log_text()
                and "127.0.0.1" in m.log_text()),
                (name, m.log_text()[-2000:]))
        # Same answers, byte for byte (the body names the host, not the
        # port).
        for what in answers["etcd"]:
            e = answers["etcd"][what]
            d = answers["detcd"][what]
            self.assertEqual(d, e, what)
        self.assertIn('etcd --host-whitelist "127.0.0.1"',
                      answers["detcd"]["/health"][2])
        self.assertIn('etcd --host-whitelist "localhost"',
                      answers["detcd"]["no-port"][2])

    def test_empty_flag_is_one_empty_name(self):
        # Go's flag gives --host-whitelist '' the list {""} (not "allow
        # all", whatever the help says): only requests without a host pass.
        flags = ["--host-whitelist", ""]
        for label, binary in (("etcd", CONFIG["reference"]),
                              ("detcd", CONFIG["server"])):
            c = self.new_cluster(binary, label=label, extra_flags=flags)
            port = c.members[0].client_port
            status, _, body = request(port, "GET", "/health", "127.0.0.1")
            self.assertEqual(status, 421, (label, body))
            with socket.create_connection(("127.0.0.1", port), 20) as s:
                s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                got = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            self.assertTrue(got.startswith(b"HTTP/1.0 200 ") or
                            got.startswith(b"HTTP/1.1 200 "), (label, got))

    def test_default_accepts_any_host(self):
        c = self.new_cluster(CONFIG["server"], label="detcd")
        port = c.members[0].client_port
        for host in ("127.0.0.1:%d" % port, "evil.example"):
            status, _, body = request(port, "GET", "/health", host)
            self.assertEqual(status, 200, (host, body))


if __name__ == "__main__":
    cluster.main()
