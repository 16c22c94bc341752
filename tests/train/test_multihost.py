"""Multi-host training as real processes: 2 JAX processes x 2 CPU devices (gloo) on localhost.

One scenario, shared by the tests below (CI's budget): ``train.py`` on the tiny shapes demo
(16 DAMSM + 16 GAN steps: two epochs of each phase over the 64 training records, the GAN at a
global batch of 8 instead of 4 so that its two epochs take 16 steps, not 32) started as 2
processes on an empty data directory, then

1. SIGTERM to both processes during DAMSM: they agree on a step, save it, exit 143;
2. restarted; SIGTERM to process 1 only during the GAN phase: both stop at one step, exit 143;
3. restarted; SIGKILL to process 1 once it has started a step past the last checkpoint: the
   launcher kills the other (its collectives cannot complete), the step is replayed later;
4. restarted: runs to the end (export, sample grids, summary, evaluation).

The tiny demo config evaluates during training (its ``config.evals``: DAMSM retrieval, caption
fidelity, R-precision at each phase's last step), every process scoring its share. Afterwards the
1-process run's exported model is evaluated by one small script as 2 processes x 2 devices and as
1 process x 4 devices: the same model, so the figures must agree.

The same config runs uninterrupted as 1 process with 4 CPU devices (the same global batch over the
same number of devices). The interrupted 2-process run must end with the same parameters, have
seen the same examples at every step, and write every output once and completely.
"""

import glob
import json
import os
import signal
import sys
import time

import numpy as np
import pytest
from paths import REPO
from PIL import Image

from attngan_jax import model_dir
from attngan_jax.data.tfds_builders import VERSION
from attngan_jax.runtime.launch import Job, process_env

TIMEOUT_S = 600  # per job: a hang fails the test instead of the whole CI run
FLAGS = [
    "--config=configs/shapes.py:tiny",
    "--config.trace_examples=True",
    "--config.damsm.num_steps=16",  # batch 8: two epochs
    "--config.gan.num_steps=16",
    "--config.gan.batch_size=8",  # two epochs in 16 steps
    "--config.checkpoint_every=2",
    "--config.sample_every=8",
]
pytestmark = pytest.mark.slow


def _command(workdir, data_dir):
    return ["train.py", *FLAGS, f"--workdir={workdir}", f"--config.data.data_dir={data_dir}"]


def _wait_for(predicate, job, what, timeout_s=TIMEOUT_S):
    t0 = time.time()
    while not predicate():
        if all(c is not None for c in job.returncodes()):
            raise AssertionError(f"the job ended ({job.returncodes()}) before {what}")
        if time.time() - t0 > timeout_s:
            job.signal_all(signal.SIGKILL)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _trace(workdir, phase, process):
    path = os.path.join(workdir, phase, "examples", f"process_{process}-of-2.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _steps(directory):
    d = os.path.join(directory, "checkpoints")
    return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _logs(log_dir, i):
    with open(os.path.join(log_dir, f"process_{i}.log"), errors="replace") as f:
        return f.read()


def _job(workdir, data_dir, log_dir):
    return Job(_command(workdir, data_dir), 2, 2, log_dir=log_dir, log_primary=True, cwd=REPO)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    data, two, one = str(root / "data"), str(root / "two"), str(root / "one")
    logs = [str(root / f"logs{k}") for k in range(5)]
    codes = []

    # 1. both processes start together on an empty data directory; SIGTERM to both in DAMSM
    job = _job(two, data, logs[0])
    _wait_for(lambda: len(_trace(two, "damsm", 0)) >= 2, job, "2 DAMSM steps")
    job.signal_all(signal.SIGTERM)
    codes.append(job.wait(grace_s=60, timeout_s=TIMEOUT_S))
    codes.append(job.returncodes())
    stop1 = _steps(os.path.join(two, "damsm"))

    # 2. SIGTERM to process 1 only, during the GAN phase
    job = _job(two, data, logs[1])
    _wait_for(lambda: len(_trace(two, "attngan", 1)) >= 2, job, "2 GAN steps")
    job.procs[1].send_signal(signal.SIGTERM)
    job.wait(grace_s=60, timeout_s=TIMEOUT_S)
    codes.append(job.returncodes())
    stop2 = _steps(os.path.join(two, "attngan"))

    # 3. SIGKILL to process 1 once it runs a step past the last checkpoint (replayed later)
    job = _job(two, data, logs[2])
    n0 = len(_trace(two, "attngan", 1))

    def past_checkpoint():
        lines = _trace(two, "attngan", 1)[n0:]
        return bool(lines) and lines[-1]["step"] > max(_steps(os.path.join(two, "attngan")))

    _wait_for(past_checkpoint, job, "a GAN step past the last checkpoint")
    job.procs[1].send_signal(signal.SIGKILL)
    job.wait(grace_s=2, timeout_s=TIMEOUT_S)
    codes.append(job.returncodes())

    # 4. to the end
    job = _job(two, data, logs[3])
    codes.append(job.wait(grace_s=60, timeout_s=TIMEOUT_S))

    # the reference: one process, 4 devices, uninterrupted
    env = process_env(0, 1, 0, 4)
    for k in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(k)
    import subprocess

    ref = subprocess.run(
        [sys.executable, *_command(one, data)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    # the same model evaluated by 2 processes and by 1 (the script below)
    script = str(root / "evaluate.py")
    with open(script, "w") as f:
        f.write(_EVAL_SCRIPT)
    evals = {}
    for n, devices in ((2, 2), (1, 4)):
        out = str(root / f"eval_{n}.json")
        job = Job([script, os.path.join(one, "attngan"), data, out], n, devices,
                  log_dir=str(root / f"eval_logs{n}"), log_primary=True, cwd=REPO)  # fmt: skip
        evals[n] = (job.wait(grace_s=60, timeout_s=TIMEOUT_S), out)
    return dict(
        two=two, one=one, data=data, logs=logs, codes=codes, stop1=stop1, stop2=stop2, ref=ref,
        evals=evals,
    )  # fmt: skip


_EVAL_SCRIPT = """
import json, sys
from attngan_jax.runtime import sharding, xla_flags
xla_flags.apply()
sharding.maybe_initialize_distributed()
from attngan_jax.data import pipeline
from attngan_jax.eval import evaluators, sampling
from attngan_jax.eval.evaluators.base import Context
model_dir, data_dir, out = sys.argv[1:]
m = sampling.load_model(model_dir)
m = sampling.local_model(m.spec, m.vocab, m.generator, m.encoders)  # as from a training state
data = evaluators.resolve_data_path(data_dir, "shapes")
ctx = Context(model=m, model_dir=model_dir, data_path=data, dataset="shapes", num_images=14,
              batch_size=4, seed=3, inception=None, inception_kind="auto", fid_inception=None,
              fid_reference="test", stages="all")
res = evaluators.run(ctx, ["r_precision", "caption_fidelity", "attention_localisation"],
                     every_process=True)
if sharding.is_primary():
    json.dump(res, open(out, "w"), default=float)
"""


def test_sigterm_and_sigkill_stop_cleanly(runs):
    c = runs["codes"]
    assert c[0] == 143 and c[1] == [143, 143], c  # SIGTERM to both: both save and exit 143
    assert 2 <= runs["stop1"][-1] < 16, runs["stop1"]  # checkpoints every 2, and the stop's
    for i in (0, 1):
        assert f"stopped by signal 15 at step {runs['stop1'][-1]};" in _logs(runs["logs"][0], i)
    assert c[2] == [143, 143], c  # SIGTERM to one: the other stops at the same step
    assert 1 <= runs["stop2"][-1] < 16, runs["stop2"]
    for i in (0, 1):
        assert f"stopped by signal 15 at step {runs['stop2'][-1]};" in _logs(runs["logs"][1], i)
    assert c[3][1] == 128 + signal.SIGKILL and c[3][0] is not None, c  # no hang after a SIGKILL
    assert c[4] == 0, _logs(runs["logs"][3], 0)[-3000:] + _logs(runs["logs"][3], 1)[-3000:]
    assert runs["ref"].returncode == 0, runs["ref"].stderr[-3000:]
    for k in (0, 1):
        log = _logs(runs["logs"][k], 0)
        assert "stopped by signal 15 at step" in log and "Traceback" not in log, log[-3000:]


def _leaves(tree):
    import jax

    return jax.tree_util.tree_flatten_with_path(tree)[0]


def test_two_processes_equal_one(runs):
    """Final parameters of the interrupted 2-process run equal the uninterrupted 1-process run.

    Two epochs of each phase: what changes at an epoch boundary (the loader's reshuffle, the
    DAMSM learning-rate decay, a resume that crosses it) must change nothing between them.

    Both run the same global batches over 4 devices with the same XLA programs; the 2-process
    all-reduces go through gloo, whose summation order can differ from the in-process one, and
    Adam turns such last-bit differences of near-zero gradients into updates of up to ~lr
    (6e-4 here). Hence: at most 0.1 % of a leaf's elements off by more than rtol 1e-4 / atol
    1e-5, none by more than 2 lr.
    """
    for load in (
        model_dir.load_damsm,
        model_dir.load_generator,
        lambda d: model_dir.load_generator(d, raw=True),
    ):
        a, b = (
            load(os.path.join(runs["two"], "attngan")),
            load(os.path.join(runs["one"], "attngan")),
        )
        for (path, x), (_, y) in zip(_leaves(a), _leaves(b), strict=True):
            x, y = np.asarray(x), np.asarray(y)
            off = ~np.isclose(x, y, rtol=1e-4, atol=1e-5)
            assert off.mean() <= 1e-3 and np.all(np.abs(x - y)[off] <= 2 * 6e-4), (
                path,
                int(off.sum()),
                float(np.max(np.abs(x - y))),
            )
    # the DAMSM phase's export too (its own directory)
    a, b = (model_dir.load_damsm(os.path.join(runs[k], "damsm")) for k in ("two", "one"))
    for (path, x), (_, y) in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5, err_msg=str(path)
        )


def test_each_host_resumes_its_loader_position(runs):
    """Every step saw the same examples as the 1-process run, however often it was replayed."""
    for phase in ("damsm", "attngan"):
        path = os.path.join(runs["one"], phase, "examples", "process_0-of-1.jsonl")
        with open(path) as f:
            ref = {r["step"]: r["index"] for r in map(json.loads, f)}
        assert sorted(ref) == list(range(1, 17))
        seen = {0: {}, 1: {}}
        replays = 0
        for p in (0, 1):
            for r in _trace(runs["two"], phase, p):
                if r["step"] in seen[p]:
                    replays += 1
                    assert seen[p][r["step"]] == r["index"], (phase, p, r["step"])
                seen[p][r["step"]] = r["index"]
        for step, want in ref.items():
            assert seen[0][step] + seen[1][step] == want, (phase, step)
        if phase == "attngan":
            assert replays > 0  # the SIGKILL made steps after the last checkpoint run twice
        # two epochs of the 64 training records, reshuffled: every record once in each
        epochs = [sum((ref[s] for s in range(k, k + 8)), []) for k in (1, 9)]
        for epoch in epochs:
            assert sorted(epoch) == list(range(64)), (phase, epoch)
        assert epochs[0] != epochs[1], phase


def test_outputs_written_once_and_complete(runs):
    two, one = runs["two"], runs["one"]
    with open(os.path.join(two, "summary.json")) as f:
        s2 = json.load(f)
    with open(os.path.join(one, "summary.json")) as f:
        s1 = json.load(f)
    assert s2["processes"] == 2 and s2["devices"] == 4 and s1["processes"] == 1
    # a resumed run reports what the uninterrupted one does (its finished phases included)
    for phase in ("damsm", "attngan"):
        assert s2[phase]["final_step"] == 16
        assert s2[phase]["final_losses"].keys() == s1[phase]["final_losses"].keys()
        assert len(s2[phase]["final_losses"]) > 3
        for k, v in s1[phase]["final_losses"].items():
            if k != "examples_per_s":
                assert np.isclose(s2[phase]["final_losses"][k], v, rtol=1e-3, atol=1e-4), (phase, k)
    assert s2["evaluation"]["metrics"].keys() == s1["evaluation"]["metrics"].keys()
    # every output readable, written by one process: one event file per TensorBoard directory
    for name in ("step_0000008.png", "step_0000016.png"):
        Image.open(os.path.join(two, "attngan", "samples", name)).load()
    with open(os.path.join(two, "attngan", "eval", "metrics_ema.json")) as f:
        assert "r_precision" in json.load(f)["metrics"]
    for tb in ("damsm/tensorboard", "attngan/tensorboard"):
        assert len(glob.glob(os.path.join(two, tb, "events.*"))) >= 1
    for phase in ("damsm", "attngan"):
        with open(os.path.join(two, phase, "model.json")) as f:
            json.load(f)
    # nothing temporary or partial is left anywhere
    left = [
        p
        for p in glob.glob(os.path.join(two, "**", "*"), recursive=True)
        if ".tmp" in os.path.basename(p) or ".old-" in p or "orbax-checkpoint-tmp" in p
    ]
    assert not left, left


def test_shared_data_directory_prepared_once(runs):
    data = runs["data"]
    root = os.path.join(data, "attngan_shapes")
    assert sorted(os.listdir(root)) == [VERSION], os.listdir(root)  # no incomplete.* left
    assert "downloaded and prepared" in _logs(runs["logs"][0], 0)
    assert "downloaded and prepared" not in _logs(runs["logs"][0], 1)  # it waited and reused


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)):
            out[prefix + k] = v
    return out


def test_evaluation_of_two_processes_equals_one(runs):
    """Each process scores its share; combined, 2 processes report the figures of 1."""
    got = {}
    for n, (code, path) in runs["evals"].items():
        assert code == 0, n
        with open(path) as f:
            got[n] = json.load(f)
    assert got[1]["skipped"] == got[2]["skipped"] == {}
    a, b = _flat(got[2]["metrics"]), _flat(got[1]["metrics"])
    assert a.keys() == b.keys() and "r_precision_per_stage/16/r_precision" in a
    assert a["caption_fidelity/n"] == 14  # every image once: the shares add up (14 = 2 * 4 + 6)
    for k in a:
        if k.rsplit("/", 1)[-1].startswith("n"):
            assert a[k] == b[k], k  # counts are exact
        else:
            assert np.isclose(a[k], b[k], rtol=1e-6, atol=1e-9), (k, a[k], b[k])


def test_evaluations_during_training(runs):
    """The periodic evaluations ran on both processes at each phase's last step, shares combined."""
    for phase in ("damsm", "attngan"):
        recs = {}
        for k in ("two", "one"):
            with open(os.path.join(runs[k], phase, "eval", "16.json")) as f:
                recs[k] = json.load(f)
        assert recs["two"].keys() == recs["one"].keys() and recs["two"]
        for name, r in recs["two"].items():
            assert r["processes"] == 2 and recs["one"][name]["processes"] == 1
            assert r["skipped"] == recs["one"][name]["skipped"], name
            if r["skipped"]:  # the demo's FID without Inception weights
                continue
            a, b = _flat(r["metrics"]), _flat(recs["one"][name]["metrics"])
            assert a.keys() == b.keys() and a, name
            for k in a:  # the image and criterion counts depend on the captions alone
                if k.rsplit("/", 1)[-1].startswith("n"):
                    assert a[k] == b[k], (name, k)
