#!/usr/bin/env python3
"""A real Prometheus (Debian's prometheus package) scrapes a 3-member detcd
(issue 15 part 3):

- etcd_server_has_leader is 1 for each of the three members and exactly one
  member has etcd_server_is_leader 1, through Prometheus' HTTP API;
- every query of dashboards/detcd.json (etcd's Grafana dashboard's queries)
  is accepted by Prometheus and, but for the two failure-rate series (no
  failures: no series), returns data.

Prometheus runs on a free port with its data in the test's temp dir and
dies with the test (PR_SET_PDEATHSIG). Skipped when prometheus is missing.

Run alone:  python3 test_prometheus.py --server build/detcd [-v]
"""

import json
import os
import shutil
import subprocess
import time
import unittest
import urllib.parse
import urllib.request

import cluster
from cluster import CONFIG, ClusterTestCase

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                         "..", "dashboards", "detcd.json")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# Series that only exist once something failed.
MAY_BE_EMPTY = ("RPC Failed Rate", "Proposal Failure Rate")


def dashboard_queries(job):
    with open(DASHBOARD) as f:
        d = json.load(f)
    for panel in d["panels"]:
        for t in panel["targets"]:
            yield t["legendFormat"], t["expr"].replace("$cluster", job)


@unittest.skipUnless(os.access(PROMETHEUS, os.X_OK),
                     "needs prometheus (apt-get install prometheus)")
class PrometheusScrape(ClusterTestCase):
    def setUp(self):
        self.c = self.new_cluster(CONFIG["server"], size=3, label="detcd")
        self.port = cluster.free_ports(1)[0]
        cfg = os.path.join(self.c.dir, "prometheus.yml")
        targets = ", ".join("'%s'" % m.endpoint for m in self.c.members)
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: detcd\n"
                    "    static_configs:\n      - targets: [%s]\n" % targets)
        self.log = open(os.path.join(self.c.dir, "prometheus.log"), "wb")
        self.prom = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + cfg,
             "--storage.tsdb.path=" + os.path.join(self.c.dir, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.c.dir,
            stdin=subprocess.DEVNULL, preexec_fn=cluster._die_with_parent)
        self.addCleanup(self.stop_prometheus)

    def stop_prometheus(self):
        if self.prom.poll() is None:
            self.prom.kill()
        self.prom.wait()
        self.log.close()

    def query(self, expr):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.port, urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=10) as f:
            return json.loads(f.read())

    def wait_query(self, expr, predicate, timeout=90.0):
        """Polls (bounded) until predicate(result list) holds."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.prom.poll() is not None:
                with open(self.log.name, "rb") as f:
                    self.fail("prometheus exited:\n" +
                              f.read().decode(errors="replace")[-2000:])
            try:
                last = self.query(expr)
                if last["status"] == "success" and \
                        predicate(last["data"]["result"]):
                    return last["data"]["result"]
            except OSError as e:  # not listening yet
                last = repr(e)
            time.sleep(0.5)
        self.fail("query %r: timed out, last %r" % (expr, last))

    def test_has_leader_and_dashboard_queries(self):
        res = self.wait_query(
            "etcd_server_has_leader",
            lambda r: len(r) == 3 and all(x["value"][1] == "1" for x in r))
        self.assertEqual(sorted(x["metric"]["instance"] for x in res),
                         sorted(m.endpoint for m in self.c.members))
        self.wait_query("sum(etcd_server_is_leader)",
                        lambda r: len(r) == 1 and r[0]["value"][1] == "1")
        # Some traffic, then enough scrapes for rate() to have two points
        # per member.
        for i in range(20):
            self.c.ctl_ok(["put", "k%d" % i, "v"])
        bg = self.c.background(["watch", "k0"])
        self.addCleanup(bg.stop)
        self.wait_query(
            "count_over_time(etcd_server_has_leader[1m])",
            lambda r: len(r) == 3 and all(float(x["value"][1]) >= 4
                                          for x in r))
        for legend, expr in dashboard_queries("detcd"):
            r = self.query(expr)
            self.assertEqual(r["status"], "success", (legend, expr, r))
            if legend not in MAY_BE_EMPTY:
                self.assertTrue(r["data"]["result"],
                                "no data for %r: %s" % (legend, expr))


if __name__ == "__main__":
    cluster.main()
