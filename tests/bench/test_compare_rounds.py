#!/usr/bin/env python3
"""bench/compare --rounds: how the rounds' figures fold into one table
(medians; errors the most; every round kept; one round left as it was)."""
import importlib.machinery
import importlib.util
import os
import sys
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def load_compare():
    path = os.path.join(TOP, "bench", "compare")
    loader = importlib.machinery.SourceFileLoader("bench_compare", path)
    spec = importlib.util.spec_from_loader("bench_compare", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


compare = load_compare()


def fig(cpu, qps, errors=0):
    return {"ops": 100, "errors": errors, "cpu_us_op": cpu, "qps": qps}


class MergeRounds(unittest.TestCase):
    def test_median_of_each_figure(self):
        rounds = [
            {"1m": {"put": {"etcd": fig(50, 1000), "detcd": fig(10, 9000)}}},
            {"1m": {"put": {"etcd": fig(70, 800, errors=2),
                            "detcd": fig(30, 3000)}},
             "anomalies": ["detcd 1m lock: timed out"]},
            {"1m": {"put": {"etcd": fig(60, 900), "detcd": fig(12, 8000)}}},
        ]
        results = {}
        compare.merge_rounds(results, rounds)
        e = results["1m"]["put"]["etcd"]
        d = results["1m"]["put"]["detcd"]
        self.assertEqual(e["cpu_us_op"], 60)
        self.assertEqual(d["cpu_us_op"], 12)
        self.assertEqual(d["qps"], 8000)
        self.assertEqual(e["errors"], 2, "errors: the most of any round")
        self.assertEqual(e["ops"], 100)
        self.assertEqual([r["cpu_us_op"] for r in d["rounds"]], [10, 30, 12])
        self.assertEqual([r["round"] for r in d["rounds"]], [1, 2, 3])
        # The ratio is the median of the rounds' own: 10/50, 30/70, 12/60.
        self.assertAlmostEqual(compare.figure_ratio(d, e, "cpu_us_op"), 0.2)
        self.assertAlmostEqual(compare.figure_ratio(d, e, "qps"), 8000 / 900)
        self.assertEqual(results["anomalies"],
                         ["round 2: detcd 1m lock: timed out"])

    def test_even_rounds_average_the_middle_two(self):
        self.assertEqual(compare.median([1, 4, 2, 3]), 2.5)
        self.assertEqual(compare.median([5, 5]), 5)
        self.assertIsInstance(compare.median([5, 5]), int)

    def test_a_round_that_missed_a_figure(self):
        rounds = [
            {"3m": {"watch": {"etcd": fig(16, 90000)}}},
            {"3m": {"watch": {"etcd": fig(18, 80000),
                              "detcd": fig(4, 300000)}}},
            {"restart": {"detcd": {"keys": 1000, "restart_s": 1.0}}},
        ]
        results = {}
        compare.merge_rounds(results, rounds)
        self.assertEqual(results["3m"]["watch"]["etcd"]["cpu_us_op"], 17)
        self.assertEqual(results["3m"]["watch"]["detcd"],
                         fig(4, 300000), "one round: as measured")
        # No rounds to pair: the ratio of the figures.
        self.assertAlmostEqual(compare.figure_ratio(
            results["3m"]["watch"]["detcd"], results["3m"]["watch"]["etcd"],
            "cpu_us_op"), 4 / 17)
        self.assertEqual(results["restart"]["detcd"]["restart_s"], 1.0)
        self.assertNotIn("etcd", results["restart"])

    def test_one_round_is_left_as_it_was(self):
        r = {"1m": {"put": {"etcd": fig(50, 1000), "detcd": fig(10, 9000)}},
             "restart": {"etcd": {"keys": 10, "restart_s": 3.0}},
             "anomalies": ["x"]}
        results = {}
        compare.merge_rounds(results, [r])
        self.assertEqual(results["1m"], r["1m"])
        self.assertEqual(results["restart"], r["restart"])
        self.assertEqual(results["anomalies"], ["x"])
        self.assertNotIn("rounds", results["1m"]["put"]["detcd"])

    def test_the_table_says_it_is_a_median(self):
        results = {"when": "now", "machine": "m", "load_start": "0 0 0",
                   "rounds": 3,
                   "1m": {"put": {"etcd": fig(60, 900),
                                  "detcd": fig(12, 8000)}}}
        md = compare.markdown(results, "bench/compare --rounds 3")
        self.assertIn("each figure the median of 3 rounds", md)
        results["rounds"] = 1
        md = compare.markdown(results, "bench/compare")
        self.assertNotIn("median", md)


if __name__ == "__main__":
    sys.exit(unittest.main())
