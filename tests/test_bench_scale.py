"""bench/bench_scale.py: the fits and the extrapolation to 450 h / 10,000 h (pure logic, no timing)."""
import os
import sys

import pytest

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
import bench_scale as bs  # noqa: E402


def test_linear_fit_recovers_the_line():
    f = bs.fit([0.1, 0.3, 1.0], [2 + 5 * x for x in (0.1, 0.3, 1.0)])
    assert f["kind"] == "linear"
    assert f["a"] == pytest.approx(2) and f["b"] == pytest.approx(5)
    assert bs.max_residual(f) < 1e-9
    assert bs.predict(f, 450) == pytest.approx(2 + 5 * 450)


def test_residuals_show_a_poor_fit():
    xs = [1000, 2000, 5000, 10000]
    ys = [1 + 1e-6 * n * n for n in xs]
    n2, lin = bs.fit(xs, ys, "n2"), bs.fit(xs, ys, "linear")
    assert n2["b"] == pytest.approx(1e-6) and bs.max_residual(n2) < 1e-6
    assert bs.max_residual(lin) > 0.1          # a line through a parabola: visible in the residuals
    assert bs.max_residual(bs.fit(xs, ys, "nlogn")) > bs.max_residual(n2)
    assert bs.predict(n2, 20000) == pytest.approx(1 + 400)


def test_negative_slope_becomes_a_constant():
    f = bs.fit([1, 2, 3], [10.0, 9.0, 8.0])
    assert f["b"] == 0 and f["a"] == pytest.approx(9.0)
    assert bs.predict(f, 1e6) == pytest.approx(9.0)


def test_fit_needs_two_points():
    with pytest.raises(ValueError, match="need >= 2 points"):
        bs.fit([1.0], [2.0])


def test_memory_fit_constant_for_a_streaming_stage_line_when_it_grows():
    flat = bs.memory_fit([0.1, 0.3, 1.0], [100.0, 104.0, 103.0])
    assert flat["kind"] == "constant" and bs.predict(flat, 10000) == 104.0
    growing = bs.memory_fit([0.1, 0.3, 1.0], [100.0, 130.0, 235.0])
    assert growing["kind"] == "linear" and bs.predict(growing, 450) > 10000


def fits_for_extrapolation():
    line = lambda a, b, kind="linear": {"kind": kind, "a": a, "b": b, "x": [], "y": [], "residuals": []}  # noqa: E731
    return {"fbank_cpu": line(1.0, 4.0), "fbank_rss": line(50.0, 0.0, "constant"),
            "extract_VggCpu_cpu": line(6.0, 10.0), "extract_VggCpu_rss": line(600.0, 0.0, "constant"),
            "cache_memmap_cpu": line(0.1, 2.0), "cache_memmap_rss": line(40.0, 0.0, "constant"),
            "cache_memory_cpu": line(0.1, 2.0), "cache_memory_rss": line(40.0, 170.0),
            "cluster_exact_cpu": line(0.5, 1e-6, "n2"), "cluster_exact_rss": line(150.0, 0.0, "constant"),
            "cluster_rest_cpu": line(0.1, 1e-5), "cluster_rest_rss": line(100.0, 4e-4)}


def test_extrapolation_rows():
    per_hour = {"fbank_compressed": 15e6, "extract_VggCpu": 5e6, "cache": 57.6e6}
    train = {"train_cv.conf": {"cpu_step_s": 0.2, "threads": 2, "rss_mb": 700.0, "steps": 10000}}
    rows = bs.extrapolate(fits_for_extrapolation(), per_hour, train, hours=(450.0,), jobs=(1, 16))
    by = {(r["stage"], r["jobs"]): r for r in rows}
    fb16 = by[("fbank", 16)]
    assert fb16["wall_s"] == pytest.approx(1 + 4 * 450 / 16)
    assert fb16["cpu_s"] == pytest.approx(16 * (1 + 4 * 450 / 16))
    assert fb16["disk_bytes"] == pytest.approx(450 * 15e6) and fb16["rss_mb"] == 50.0
    assert by[("extract VggCpu", 1)]["wall_s"] == pytest.approx(6 + 10 * 450)
    assert "extract Vgg16big" not in {r["stage"] for r in rows}       # not measured: no row
    assert by[("features in RAM (no cache)", 1)]["rss_mb"] == pytest.approx(40 + 170 * 450)
    assert by[("feature cache (memmap build)", 1)]["disk_bytes"] == pytest.approx(450 * 57.6e6)
    tr = by[("train train_cv.conf", 1)]
    assert tr["cpu_s"] == pytest.approx(2000) and tr["wall_s"] == pytest.approx(1000)
    cl = by[("cluster", 1)]
    n = 450 * 3600 / 6
    assert cl["note"] == f"{int(n)} utterances"
    assert cl["wall_s"] == pytest.approx(0.5 + 1e-6 * 20000 ** 2 + 0.1 + 1e-5 * n)
    assert cl["rss_mb"] == pytest.approx(max(150.0, 100 + 4e-4 * n))


def test_cluster_seconds_exact_below_the_limit():
    fits = fits_for_extrapolation()
    assert bs.cluster_seconds(fits, 10000, 20000) == pytest.approx(0.5 + 1e-6 * 1e8)
    assert bs.cluster_seconds(fits, 30000, 20000) == pytest.approx(0.5 + 1e-6 * 4e8 + 0.1 + 1e-5 * 30000)


def test_table_one_line_per_stage_and_size():
    per_hour = {"fbank_compressed": 15e6, "extract_VggCpu": 5e6, "cache": 57.6e6}
    rows = bs.extrapolate(fits_for_extrapolation(), per_hour, {}, hours=(450.0, 10000.0), jobs=(1, 16, 64))
    lines = bs.extrapolation_table(rows).splitlines()
    stages = {(r["stage"], r["hours"]) for r in rows}
    assert len(lines) == 2 + len(stages)
    assert "10,000 h" in lines[-1]
