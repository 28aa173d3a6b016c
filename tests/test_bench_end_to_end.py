"""bench/bench_end_to_end.py: training minutes to a held-out accuracy (pure logic, fast)."""
import os
import sys

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import bench_end_to_end as b  # noqa: E402


def test_minutes_to_first_reach():
    curve = [[0.5, 0.70], [1.0, 0.91], [1.5, 0.88], [2.0, 0.93]]
    assert b.minutes_to(curve, 0.90) == 1.0      # the first time, not the last
    assert b.minutes_to(curve, 0.91) == 1.0      # reaching it exactly counts
    assert b.minutes_to(curve, 0.93) == 2.0
    assert b.minutes_to(curve, 0.95) is None     # never reached
    assert b.minutes_to([], 0.5) is None
