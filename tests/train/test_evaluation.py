"""Evaluation during training: the best model (kept across a resume, never replaced by a worse one)."""

import json
import os

import pytest

from attngan_jax import config_lib
from attngan_jax.configs import shapes as shapes_config
from attngan_jax.errors import InputError
from attngan_jax.train import evaluation


def _export(directory, state):
    with open(os.path.join(directory, "weights.txt"), "w") as f:
        f.write(str(state))


def _best(workdir):
    with open(os.path.join(workdir, "best", "best.json")) as f:
        return json.load(f)


def test_best_keeps_the_best_across_a_resume(tmp_path):
    w = str(tmp_path)
    best = evaluation.Best("caption_fidelity/position:max", w, _export)
    assert best.offer(2, {"caption_fidelity/position": 0.5}, "s2", "p")
    assert not best.offer(3, {"r_precision": 0.9}, "s3")  # another metric: nothing happens
    assert not best.offer(4, {"caption_fidelity/position": 0.4}, "s4")  # worse: kept
    assert _best(w) == {"step": 2, "value": 0.5, "metric": "caption_fidelity/position",
                        "mode": "max", "protocol": "p"}  # fmt: skip
    # a resumed run reads the best value back: an equal or worse figure does not replace it
    resumed = evaluation.Best("caption_fidelity/position:max", w, _export)
    assert resumed.value == 0.5
    assert not resumed.offer(6, {"caption_fidelity/position": 0.5}, "s6")
    assert open(os.path.join(w, "best", "weights.txt")).read() == "s2"
    assert resumed.offer(8, {"caption_fidelity/position": 0.75}, "s8")
    assert _best(w)["step"] == 8 and open(os.path.join(w, "best", "weights.txt")).read() == "s8"
    assert sorted(os.listdir(w)) == ["best"]  # nothing temporary left
    low = evaluation.Best("r_precision:min", str(tmp_path / "m"), _export)
    assert low.offer(1, {"r_precision": 0.3}, "a") and not low.offer(2, {"r_precision": 0.4}, "b")
    assert low.offer(3, {"r_precision": 0.2}, "c")


def test_best_recovers_what_a_killed_export_left(tmp_path):
    w = str(tmp_path)
    evaluation.Best("x:max", w, _export).offer(1, {"x": 1.0}, "s1")
    os.makedirs(os.path.join(w, ".tmp-best-deadbeef"))  # killed while writing a new best
    os.replace(os.path.join(w, "best"), os.path.join(w, ".old-best-cafe0000"))  # between renames
    best = evaluation.Best("x:max", w, _export)
    assert sorted(os.listdir(w)) == ["best"] and best.value == 1.0


def test_eval_entries_are_validated():
    c = shapes_config.build("demo", "tiny")
    config_lib.validate(c)
    assert {e.type for e in c.evals.values()} == {
        "caption_fidelity",
        "r_precision",
        "damsm_retrieval",
        "fid",  # skipped without Inception weights
    }
    assert c.evals.fid.inception == ""
    c.evals.caption_fidelity.stages = "every"
    with pytest.raises(InputError, match="evals.caption_fidelity.stages"):
        config_lib.validate(c)
    c = shapes_config.build("demo", "tiny")
    c.best = "caption_fidelity/position"
    with pytest.raises(InputError, match="--config.best"):
        config_lib.validate(c)


def test_flatten_keeps_finite_numbers():
    flat = evaluation.flatten({"a": {"b": 1, "c": float("nan")}, "d": 0.5, "e": "text"})
    assert flat == {"a/b": 1.0, "d": 0.5}


def test_process_allgather_packs_any_leaves_exactly(monkeypatch):
    """sharding.process_allgather's packing, with two threads standing in for two processes (the
    cross-process all-gather itself: tests/train/test_multihost.py)."""
    import threading

    import jax
    import numpy as np

    from attngan_jax.runtime import sharding

    shares = [
        {"codes": np.arange(6.0).reshape(3, 2)[:, ::-1] / 3, "n": np.int64(3), "x": 2.5},
        {"codes": np.ones((1, 2)), "n": np.int64(2**40), "x": -1.0},  # another length
    ]
    rank, slots, barrier = threading.local(), [None, None], threading.Barrier(2)

    def stack(x):  # the all-gather: every rank's x, in rank order
        slots[rank.i] = x
        barrier.wait()
        out = np.stack(slots)
        barrier.wait()
        return out

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(sharding, "_stack_over_processes", stack)
    results = [None, None]

    def run(i):
        rank.i = i
        results[i] = sharding.process_allgather(shares[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for out in results:  # both ranks get both shares, exactly
        assert len(out) == 2
        for got, want in zip(out, shares):
            assert got["codes"].dtype == np.float64 and got["n"].shape == ()
            np.testing.assert_array_equal(got["codes"], want["codes"])
            assert int(got["n"]) == int(want["n"]) and float(got["x"]) == want["x"]


def test_clip_entries_are_validated_and_reach_the_evaluators(tmp_path, monkeypatch):
    import types

    from attngan_jax.errors import MissingInputError

    c = shapes_config.build("demo", "tiny")
    c.evals.clip_score = config_lib.eval_entry("clip_score", 10, num_images=8)
    c.evals.clip_score.clip = str(tmp_path / "clip")
    with pytest.raises(MissingInputError, match="evals.clip_score.clip"):  # no clip.json there
        config_lib.validate(c)
    os.makedirs(tmp_path / "clip")
    (tmp_path / "clip" / "clip.json").write_text("{}")
    config_lib.validate(c)
    c.evals.clip_score.clip_score_variant = "hessel"
    with pytest.raises(InputError, match="evals.clip_score.clip_score_variant"):
        config_lib.validate(c)
    c.evals.clip_score.clip_score_variant = "clipscore"
    # the entry's keys reach the evaluators' context (the networks and the run are stand-ins)
    monkeypatch.setattr(evaluation.sampling, "local_model", lambda *args: "model")
    monkeypatch.setattr(evaluation.evaluators, "run", lambda ctx, metrics, **kw: (ctx, metrics))
    compute = evaluation.generator_evaluation(c, types.SimpleNamespace(dataset="shapes"), None,
                                              "data", "work")  # fmt: skip
    state = types.SimpleNamespace(ema_params=0, g_stats=0, encoders=0)
    ctx, metrics = compute(c.evals.clip_score, state)
    assert metrics == ["clip_score"] and ctx.clip == str(tmp_path / "clip")
    assert ctx.clip_score_variant == "clipscore" and ctx.clip_pipeline == ""
