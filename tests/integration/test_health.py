#!/usr/bin/env python3
"""Health and readiness endpoints (issue 15 part 2), detcd next to etcd 3.4.

- /health on a healthy 3-member cluster: 200 and "health":"true" on both;
  a plain /health body is etcd 3.4's on both; detcd adds etcd 3.5's
  "reason" field when a 3.5 parameter (exclude, serializable) is given.
- A NOSPACE alarm (small --quota-backend-bytes): /health is 503 on both
  (reason "ALARM NOSPACE" on detcd with a 3.5 parameter),
  /health?exclude=NOSPACE is 200 on both; /readyz stays ready (only
  CORRUPT matters to it, as in 3.5).
- A member cut off from its peers (the other two SIGSTOPped): /health is 503
  on both (reason "RAFT NO LEADER" on detcd with a 3.5 parameter); on
  detcd, 3.5's /health?serializable=true and /livez are still 200 while
  /readyz is 503 and names linearizable_read as the failed check.
- The health metrics (etcd_server_health_success / _failures and 3.5's
  etcd_server_healthcheck{type,name}) count what was asked.

Run alone:  python3 test_health.py --server build/detcd [-v]
"""

import json
import signal
import time
import urllib.error
import urllib.request

import cluster
from cluster import CONFIG, ClusterTestCase


def http_get(url, timeout=20.0):
    """(status, body text) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as f:
            return f.status, f.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(predicate, timeout=60.0, what=""):
    """Polls (bounded) until predicate() returns a true value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s (last %r)" % (what, last))


def metric_value(text, sample):
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


class HealthCompare(ClusterTestCase):
    SIDES = ("etcd", "detcd")

    def clusters(self, size, flags=()):
        ref = self.new_cluster(CONFIG["reference"], size=size, label="etcd",
                               extra_flags=flags)
        srv = self.new_cluster(CONFIG["server"], size=size, label="detcd",
                               extra_flags=flags)
        return {"etcd": ref, "detcd": srv}

    def test_healthy_cluster(self):
        sides = self.clusters(3)
        for name, c in sides.items():
            for m in c.members:
                status, body = http_get(m.client_url + "/health")
                self.assertEqual(status, 200, (name, body))
                self.assertEqual(json.loads(body)["health"], "true",
                                 (name, body))
        srv = sides["detcd"].members[0].client_url
        ref = sides["etcd"].members[0].client_url
        # A plain /health answers etcd 3.4's body, byte for byte; a 3.5
        # parameter brings 3.5's reason.
        self.assertEqual(http_get(srv + "/health"), http_get(ref + "/health"))
        self.assertEqual(http_get(srv + "/health"), (200, '{"health":"true"}'))
        self.assertEqual(json.loads(http_get(srv +
                                             "/health?serializable=false")[1]),
                         {"health": "true", "reason": ""})
        for path in ("/livez", "/readyz"):
            self.assertEqual(http_get(srv + path), (200, "ok\n"))
        status, body = http_get(srv + "/readyz?verbose")
        self.assertEqual(status, 200)
        self.assertEqual(body, "[+]data_corruption ok\n"
                               "[+]serializable_read ok\n"
                               "[+]linearizable_read ok\nok\n")
        # Non-GET is refused on both servers.
        for name, c in sides.items():
            req = urllib.request.Request(c.members[0].client_url + "/health",
                                         data=b"", method="POST")
            try:
                urllib.request.urlopen(req, timeout=10)
                self.fail("%s accepted POST /health" % name)
            except urllib.error.HTTPError as e:
                self.assertEqual(e.code, 405, name)
        metrics = http_get(srv + "/metrics")[1]
        self.assertGreaterEqual(
            metric_value(metrics, "etcd_server_health_success"), 2)
        self.assertEqual(metric_value(
            metrics, 'etcd_server_healthcheck{name="linearizable_read",'
            'type="readyz"}'), 1)

    def test_leader_shows_at_once_after_election(self):
        # With a 1 s heartbeat a member that has just elected itself must
        # say so on /health as soon as it serves a linearizable read
        # (`etcdctl endpoint health`, which the cluster's start waits for),
        # not a heartbeat later: detcd published the leader on its ticks
        # only, and answered "RAFT NO LEADER" here 4 times in 5.
        for name, binary in (("etcd", CONFIG["reference"]),
                             ("detcd", CONFIG["server"])):
            c = self.new_cluster(binary, label=name, heartbeat_ms=1000,
                                 election_ms=10000)
            status, body = http_get(c.members[0].client_url + "/health")
            self.assertEqual(status, 200, (name, body))

    def test_nospace_alarm(self):
        sides = self.clusters(1, flags=("--quota-backend-bytes=300000",))
        value = "x" * 20000
        for name, c in sides.items():
            for i in range(80):
                if not c.etcdctl(["put", "q/%03d" % i, value]).ok:
                    break
            alarms = c.ctl_ok(["alarm", "list"]).out
            self.assertIn("NOSPACE", alarms, name)
            url = c.members[0].client_url
            status, body = http_get(url + "/health")
            self.assertEqual(status, 503, (name, body))
            self.assertEqual(json.loads(body)["health"], "false", name)
            status, body = http_get(url + "/health?exclude=NOSPACE")
            self.assertEqual(status, 200, (name, body))
            self.assertEqual(json.loads(body)["health"], "true", name)
        url = sides["detcd"].members[0].client_url
        self.assertEqual(json.loads(http_get(
            url + "/health?serializable=false")[1])["reason"],
                         "ALARM NOSPACE")
        self.assertEqual(http_get(url + "/readyz"), (200, "ok\n"))
        metrics = http_get(url + "/metrics")[1]
        self.assertGreaterEqual(
            metric_value(metrics, "etcd_server_health_failures"), 1)

    def test_member_without_leader(self):
        sides = self.clusters(3)
        for name, c in sides.items():
            alone = c.members[0]
            for m in c.members[1:]:
                m.stop()
            url = alone.client_url
            # Leadership is lost once the election timeout passes with no
            # quorum (check quorum), bounded generously for a loaded host.
            wait_for(lambda: http_get(url + "/health")[0] == 503, 60,
                     "%s /health 503" % name)
            body = http_get(url + "/health")[1]
            self.assertEqual(json.loads(body)["health"], "false", name)
            if name == "detcd":
                body = http_get(url + "/health?serializable=false")[1]
                self.assertEqual(json.loads(body)["reason"], "RAFT NO LEADER")
                self.assertEqual(
                    http_get(url + "/health?serializable=true")[0], 200)
                self.assertEqual(http_get(url + "/livez"), (200, "ok\n"))
                status, body = http_get(url + "/readyz")
                self.assertEqual(status, 503, body)
                self.assertIn("[+]serializable_read ok\n", body)
                self.assertIn("[-]linearizable_read failed: ", body)
                self.assertEqual(
                    http_get(url + "/readyz?exclude=linearizable_read"),
                    (200, "ok\n"))
                metrics = http_get(url + "/metrics")[1]
                self.assertEqual(metric_value(
                    metrics, 'etcd_server_healthcheck{name="linearizable_read",'
                    'type="readyz"}'), 0)
            for m in c.members[1:]:
                m.cont()
            wait_for(lambda: http_get(url + "/health")[0] == 200, 60,
                     "%s /health back to 200" % name)


if __name__ == "__main__":
    cluster.main()
