"""benchmarks/studies/ab_options.py: option parsing, paired statistics, rejected options, one real run."""

import os
import sys

import numpy as np
import pytest
from paths import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks", "studies"))

import ab_options  # noqa: E402


def test_parse_option_converts_values():
    assert ab_options.parse_option("xla_a=true") == ("xla_a", True)
    assert ab_options.parse_option("--xla_b=False") == ("xla_b", False)
    assert ab_options.parse_option("xla_c=-3") == ("xla_c", -3)
    assert ab_options.parse_option("xla_d=AVX2") == ("xla_d", "AVX2")
    with pytest.raises(ValueError, match="name=value"):
        ab_options.parse_option("xla_e")


def test_paired_stats():
    a = np.array([10.0, 12.0, 11.0, 13.0])
    b = np.array([11.0, 13.5, 12.0, 14.0])  # B - A = 1, 1.5, 1, 1
    s = ab_options.paired_stats(a, b)
    assert s["diff_ms_median"] == 1.0 and s["diff_ms_mean"] == 1.125
    np.testing.assert_allclose(s["diff_ms_sem"], np.std([1, 1.5, 1, 1], ddof=1) / 2)
    np.testing.assert_allclose(s["diff_pct_median"], 100 * 1.0 / 11.5)
    assert s["a_ms_min"] == 10.0 and s["b_ms_min"] == 11.0


def test_unknown_option_is_rejected_before_the_preset_compiles():
    with pytest.raises(ValueError, match="No such compile option: 'xla_not_an_option'"):
        ab_options.check_options({"xla_not_an_option": 1})


def test_shapes_run(tmp_path):
    out = tmp_path / "ab.json"
    res = ab_options.main(
        [
            "--preset=shapes",
            "--batch_size=2",
            "--pairs=2",
            f"--json={out}",
            "xla_cpu_enable_fast_min_max=true",
        ]
    )
    assert res["options"] == {"xla_cpu_enable_fast_min_max": True}
    assert len(res["a_ms"]) == len(res["b_ms"]) == 2
    assert all(t > 0 for t in res["a_ms"] + res["b_ms"])
    assert np.isfinite(res["diff_ms_mean"]) and out.exists()
