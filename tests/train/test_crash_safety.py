"""Crash safety: ``kill -9`` at the moments that write files, rerun, and nothing partial remains.

One workdir, one tiny demo job (8 DAMSM + 8 GAN steps, a checkpoint every 2), killed with a real
SIGKILL at a sequence of moments (``attngan_jax.runtime.faults``: the process kills itself exactly there,
so the moment is hit every time) and rerun after each kill until it finishes. The result must be
what an uninterrupted run gives: the same exported networks (bitwise: same process, same devices,
resume is exact), the same summary, and no temporary or partial path anywhere.
"""

import glob
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from paths import REPO

from attngan_jax import model_dir

FLAGS = [
    "--config=configs/shapes.py:tiny",
    "--config.damsm.num_steps=8",
    "--config.gan.num_steps=8",
    "--config.checkpoint_every=2",
    "--config.sample_every=4",
]
CRASHES = [
    "prepare:train:20",  # dataset generation: TFDS's incomplete.* directory is left
    "checkpoint:damsm:4",  # an asynchronous checkpoint write, not committed
    "export:damsm:damsm",  # an exported part under its temporary name
    "step:attngan:5",  # training
    "best:attngan",  # a best model written under its temporary name, not swapped in
    "record:attngan",  # exports complete, phase not recorded: the rerun replaces every part
    "evaluate",  # the final evaluation
]
pytestmark = pytest.mark.slow


def _run(workdir, data_dir, cache, crash=None):
    env = dict(os.environ, ATTNGAN_JAX_CACHE=cache, JAX_PLATFORMS="cpu")
    env.pop("ATTNGAN_CRASH_AT", None)
    if crash:
        env["ATTNGAN_CRASH_AT"] = crash
    cmd = [sys.executable, "train.py", *FLAGS, f"--workdir={workdir}"]
    cmd.append(f"--config.data.data_dir={data_dir}")
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def _partial_paths(root):
    return [
        p
        for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
        + glob.glob(os.path.join(root, "**", ".*"), recursive=True)
        if os.path.basename(p).startswith((".tmp", ".old-", "incomplete."))
        or "orbax-checkpoint-tmp" in p
        or p.endswith(".tmp")
    ]


@pytest.fixture(scope="module")
def crashed_and_straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    cache, data = str(root / "cache"), str(root / "data")
    crashed, straight = str(root / "crashed"), str(root / "straight")
    left = {}
    for tag in CRASHES:
        r = _run(crashed, data, cache, tag)
        assert r.returncode == -signal.SIGKILL, (tag, r.returncode, r.stderr[-3000:])
        left[tag] = _partial_paths(str(root))
    final = _run(crashed, data, cache)
    assert final.returncode == 0, final.stderr[-3000:]
    ref = _run(straight, data, cache)
    assert ref.returncode == 0, ref.stderr[-3000:]
    return dict(root=str(root), crashed=crashed, straight=straight, left=left, final=final)


def test_each_kill_left_what_it_should(crashed_and_straight):
    """The kills hit the moments they name (else the test below proves nothing)."""
    left = crashed_and_straight["left"]
    assert any("incomplete." in p for p in left["prepare:train:20"])
    assert any("orbax-checkpoint-tmp" in p for p in left["checkpoint:damsm:4"])
    assert any(os.path.basename(p).startswith(".tmp-damsm") for p in left["export:damsm:damsm"])
    assert any(os.path.basename(p).startswith(".tmp-best-") for p in left["best:attngan"])


def test_rerun_after_kills_equals_uninterrupted(crashed_and_straight):
    a, b = crashed_and_straight["crashed"], crashed_and_straight["straight"]
    for phase, load in (
        ("damsm", model_dir.load_damsm),
        ("attngan", model_dir.load_damsm),
        ("attngan", model_dir.load_generator),
        ("attngan", lambda d: model_dir.load_generator(d, raw=True)),
    ):
        x, y = load(os.path.join(a, phase)), load(os.path.join(b, phase))
        import jax

        for (path, u), (_, v) in zip(
            jax.tree_util.tree_flatten_with_path(x)[0],
            jax.tree_util.tree_flatten_with_path(y)[0],
            strict=True,
        ):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v), err_msg=f"{phase} {path}")


def test_summary_is_that_of_an_uninterrupted_run(crashed_and_straight):
    def load(d):
        with open(os.path.join(d, "summary.json")) as f:
            s = json.load(f)
        for phase in ("damsm", "attngan"):
            s[phase]["final_losses"].pop("examples_per_s")
        s["evaluation"].pop("seconds", None)
        s["evaluation"].pop("model_dir")
        return s

    a, b = load(crashed_and_straight["crashed"]), load(crashed_and_straight["straight"])
    assert len(a["damsm"]["final_losses"]) > 3 and len(a["attngan"]["final_losses"]) > 3
    assert a == b


def test_nothing_partial_remains(crashed_and_straight):
    assert not _partial_paths(crashed_and_straight["root"])


def test_best_model_and_evaluations_equal_uninterrupted(crashed_and_straight):
    """best/ and every eval/<step>.json are those of the uninterrupted run."""
    a, b = crashed_and_straight["crashed"], crashed_and_straight["straight"]
    with (
        open(os.path.join(a, "attngan", "best", "best.json")) as f,
        open(os.path.join(b, "attngan", "best", "best.json")) as g,
    ):
        assert json.load(f) == json.load(g)
    x = model_dir.load_generator(os.path.join(a, "attngan", "best"))
    y = model_dir.load_generator(os.path.join(b, "attngan", "best"))
    import jax

    for u, v in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    for phase in ("damsm", "attngan"):
        names = sorted(os.listdir(os.path.join(b, phase, "eval")))
        assert "8.json" in names
        for n in names:
            if n.endswith(".json") and n[:-5].isdigit():
                with (
                    open(os.path.join(a, phase, "eval", n)) as f,
                    open(os.path.join(b, phase, "eval", n)) as g,
                ):
                    ra, rb = json.load(f), json.load(g)
                for r in (*ra.values(), *rb.values()):
                    r.pop("seconds")
                assert ra == rb, (phase, n)
