"""Checkpointer guarantees: exact round trip, retention, atomicity, corruption fallback,
durability of forced saves, sharded restore, and the preemption flag (SIGTERM/SIGINT)."""

import glob
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attngan_jax.train.checkpoint import Checkpointer, install_preemption_handler

TMP_SUFFIX = ".orbax-checkpoint-tmp"


def make_state(scale: float = 1.0):
    """A GAN-like state: params, batch stats, optax states (namedtuples, int counters), rng."""
    params = {
        "g": {"dense": {"kernel": jnp.arange(12.0).reshape(3, 4) * scale, "bias": -jnp.zeros(4)}},
        "d": {"d64": {"w": jnp.linspace(-1, 1, 64 * 64).reshape(64, 64) * scale}},
    }
    tx_g = optax.adam(2e-4, b1=0.5)
    tx_d = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(2e-4, b1=0.5))
    opt_g = tx_g.init(params["g"])
    grads = jax.tree.map(lambda p: p * 0.1 + 0.3, params["g"])
    _, opt_g = tx_g.update(grads, opt_g, params["g"])  # non-trivial mu/nu, count == 1
    return {
        "step": jnp.int32(int(17 * scale)),
        "params": params,
        "batch_stats": {"bn": {"mean": jnp.full((4,), 0.5 * scale), "var": jnp.ones(4)}},
        "opt_g": opt_g,
        "opt_d": tx_d.init(params["d"]),
        "ema_g": jax.tree.map(lambda p: p * 0.999, params["g"]),
        "rng": jax.random.key_data(jax.random.PRNGKey(int(scale * 1000))),  # uint32 (2,)
        "half": jnp.asarray([1.5, -2.25, scale], jnp.bfloat16),
        "mask": jnp.asarray([True, False, True]),
    }


def assert_trees_identical(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, jax.tree_util.keystr(path)
        assert x.tobytes() == y.tobytes(), jax.tree_util.keystr(path)  # bitwise, -0.0 included


def save_steps(d, steps, **kw):
    with Checkpointer(d, **kw) as ckpt:
        for s in steps:
            assert ckpt.save(s, make_state(float(s)), {"step": s}, force=True)


def run_py(code: str, *args, env_extra=None, timeout=60):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_round_trip_is_exact(tmp_path):
    state = make_state(1.5)
    assert type(state["opt_g"][0]).__name__ == "ScaleByAdamState"
    extra = {"loader": {"epoch": 2, "index": 1234}, "seeds": [1, 2], "cfg": {"lr": 2e-4}}
    with Checkpointer(tmp_path / "ck") as ckpt:
        assert ckpt.save(10, state, extra, force=True)
    ckpt = Checkpointer(tmp_path / "ck")  # fresh manager: reads only what is on disk
    restored, rextra, step = ckpt.restore(jax.eval_shape(lambda: state))
    assert step == 10 and rextra == extra
    assert_trees_identical(state, restored)
    assert type(restored["opt_g"][0]) is type(state["opt_g"][0])
    # Concrete arrays as the target work too.
    restored2, _, _ = ckpt.restore(make_state(0.0), step=10)
    assert_trees_identical(state, restored2)
    # Typed PRNG keys (jax.random.key) also round-trip.
    key = {"k": jax.random.fold_in(jax.random.key(3), 5)}
    assert ckpt.save(11, key, force=True)
    rkey, _, _ = ckpt.restore(jax.eval_shape(lambda: key))
    assert rkey["k"].dtype == key["k"].dtype
    np.testing.assert_array_equal(jax.random.key_data(rkey["k"]), jax.random.key_data(key["k"]))
    ckpt.close()


def test_interval_and_keep_last_k(tmp_path):
    ckpt = Checkpointer(tmp_path, max_to_keep=3, save_interval_steps=2)
    saved = [ckpt.save(s, {"x": jnp.float32(s)}) for s in range(11)]
    assert saved == [s % 2 == 0 for s in range(11)]
    assert ckpt.save(11, {"x": jnp.float32(11)}, force=True)  # off-interval, forced
    assert not ckpt.save(11, {"x": jnp.float32(0)}, force=True)  # never overwrites
    ckpt.wait()
    assert ckpt.all_steps() == [8, 10, 11] and ckpt.latest_step() == 11
    assert sorted(os.listdir(tmp_path), key=int) == ["8", "10", "11"]
    ckpt.close()


def test_half_written_tmp_dirs_are_ignored_and_cleaned(tmp_path):
    save_steps(tmp_path, [1, 2])
    # Orbax's tmp names: "<step>.orbax-checkpoint-tmp" (current) and "...-<timestamp>" (older).
    for name in ["3" + TMP_SUFFIX, "4" + TMP_SUFFIX + "-1700000000"]:
        os.makedirs(tmp_path / name / "state" / "d")
        (tmp_path / name / "state" / "d" / "partial").write_bytes(b"\0" * 10)
    ckpt = Checkpointer(tmp_path)
    assert ckpt.latest_step() == 2
    state, extra, step = ckpt.restore(jax.eval_shape(make_state))
    assert step == 2 and extra == {"step": 2}
    assert_trees_identical(make_state(2.0), state)
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # cleaned by the constructor
    ckpt.close()


def test_crash_before_commit_is_never_restored(tmp_path):
    """A process killed at orbax's commit point leaves only a tmp dir, which is ignored."""
    code = """
    import os, sys
    import attngan_jax, jax.numpy as jnp
    from orbax.checkpoint._src.path import atomicity
    from attngan_jax.train.checkpoint import Checkpointer
    ckpt = Checkpointer(sys.argv[1])
    ckpt.save(1, {"x": jnp.ones(1000)}, {"s": 1}, force=True); ckpt.wait()
    async def crash(*a, **k):
        os._exit(17)  # everything written, rename/commit never happens
    atomicity.AtomicRenameTemporaryPath.finalize = crash
    atomicity.CommitFileTemporaryPath.finalize = crash
    ckpt.save(2, {"x": jnp.full(1000, 2.0)}, {"s": 2}, force=True); ckpt.wait()
    print("not reached")
    """
    r = run_py(code, tmp_path)
    assert r.returncode == 17, r.stderr[-2000:]
    names = os.listdir(tmp_path)
    assert "2" not in names and any(n.startswith("2" + TMP_SUFFIX) for n in names), names
    ckpt = Checkpointer(tmp_path)
    assert ckpt.all_steps() == [1]
    state, extra, step = ckpt.restore({"x": jax.ShapeDtypeStruct((1000,), jnp.float32)})
    assert step == 1 and extra == {"s": 1} and float(state["x"].sum()) == 1000.0
    assert sorted(os.listdir(tmp_path)) == ["1"]
    ckpt.close()


def _corrupt(step_dir: str, mode: str) -> None:
    # OCDBT inlines small arrays into its B-tree node files; the (64, 64) kernel lands in a data
    # file of its own, the largest one.
    files = sorted(glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True))
    assert files, os.listdir(step_dir)
    big = max(files, key=os.path.getsize)
    assert os.path.getsize(big) > 4 * 64 * 64 // 2, [os.path.getsize(f) for f in files]
    if mode == "truncate":
        with open(big, "r+b") as f:
            f.truncate(os.path.getsize(big) // 2)
    elif mode == "delete":
        os.remove(big)
    elif mode == "bitflip":  # silent corruption: only the fingerprints notice it
        b = bytearray(open(big, "rb").read())
        b[len(b) // 2] ^= 0x10
        open(big, "wb").write(bytes(b))
    elif mode == "metadata":
        os.remove(os.path.join(step_dir, "state", "_METADATA"))


@pytest.mark.parametrize("mode", ["truncate", "delete", "bitflip", "metadata"])
def test_corrupted_latest_falls_back_with_warning(tmp_path, caplog, mode):
    save_steps(tmp_path, [1, 2, 3])
    _corrupt(str(tmp_path / "3"), mode)
    ckpt = Checkpointer(tmp_path)
    target = jax.eval_shape(make_state)
    with caplog.at_level(logging.WARNING, logger="attngan_jax.train.checkpoint"):
        state, extra, step = ckpt.restore(target)
    assert step == 2 and extra == {"step": 2}
    assert_trees_identical(make_state(2.0), state)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("step 3" in m and "corrupted" in m for m in warned), warned
    # The bad step is moved aside, so the resumed run can write step 3 again.
    assert ckpt.all_steps() == [1, 2]
    assert len(glob.glob(str(tmp_path / "3.corrupt-*"))) == 1
    assert ckpt.save(3, make_state(3.0), {"step": 3}, force=True)
    ckpt.wait()
    assert ckpt.restore(target)[2] == 3
    ckpt.close()


def test_explicit_step_and_all_corrupted_raise(tmp_path):
    save_steps(tmp_path, [1, 2])
    _corrupt(str(tmp_path / "2"), "truncate")
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(Exception):  # noqa: B017  (explicit step: no fallback)
        ckpt.restore(jax.eval_shape(make_state), step=2)
    _corrupt(str(tmp_path / "1"), "delete")
    with pytest.raises(RuntimeError, match="every checkpoint in"):
        ckpt.restore(jax.eval_shape(make_state))
    with pytest.raises(FileNotFoundError):
        Checkpointer(tmp_path / "empty").restore(jax.eval_shape(make_state))


def test_forced_async_save_is_durable_after_wait(tmp_path):
    code = """
    import os, sys
    import attngan_jax, jax.numpy as jnp
    from attngan_jax.train.checkpoint import Checkpointer
    ckpt = Checkpointer(sys.argv[1], save_interval_steps=1000, async_save=True)
    ckpt.save(7, {"x": jnp.arange(100000.0)}, {"s": 7}, force=True)
    ckpt.wait()
    os._exit(0)  # no close(), no interpreter shutdown: only wait() made it durable
    """
    r = run_py(code, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = Checkpointer(tmp_path)
    state, extra, step = ckpt.restore({"x": jax.ShapeDtypeStruct((100000,), jnp.float32)})
    assert step == 7 and extra == {"s": 7}
    np.testing.assert_array_equal(state["x"], np.arange(100000.0, dtype=np.float32))


def test_restore_into_target_shardings(tmp_path):
    code = """
    import sys
    import attngan_jax, jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from attngan_jax.train.checkpoint import Checkpointer
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b"))
    x = jax.device_put(jnp.arange(64.0).reshape(8, 8), NamedSharding(mesh, P("a", "b")))
    ckpt = Checkpointer(sys.argv[1])
    ckpt.save(1, {"x": x, "y": x + 1}, {}, force=True)
    for spec in [P(), P("b", None), P(None, ("a", "b"))]:
        s = NamedSharding(mesh, spec)
        target = {"x": jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=s),
                  "y": jax.device_put(jnp.zeros((8, 8)), s)}
        out, _, _ = ckpt.restore(target)
        for k in "xy":
            assert out[k].sharding == s, (k, out[k].sharding, s)
        np.testing.assert_array_equal(out["x"], np.arange(64.0).reshape(8, 8))
        np.testing.assert_array_equal(out["y"], np.arange(64.0).reshape(8, 8) + 1)
    ckpt.close()
    print("OK", len(jax.devices()))
    """
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    r = run_py(code, tmp_path, env_extra={"XLA_FLAGS": flags})
    assert r.returncode == 0 and "OK 4" in r.stdout, r.stderr[-3000:]


SIGNAL_LOOP = """
import sys, time
import attngan_jax, jax.numpy as jnp
from attngan_jax.train.checkpoint import Checkpointer, install_preemption_handler
ckpt = Checkpointer(sys.argv[1], save_interval_steps=1000)
flag = install_preemption_handler()
state = {"w": jnp.zeros(4), "step": jnp.int32(0)}
for step in range(1, 10**8):
    state = {"w": state["w"] + 1.0, "step": jnp.int32(step)}
    ckpt.save(step, state, {"step": step}, force=flag.requested)
    if step == 20:
        print("ready", flush=True)
    if flag.requested and sys.argv[2] == "save":
        # As run_loop: save here, since the signal may land after this step's save call.
        ckpt.save(step, state, {"step": step}, force=True)
        ckpt.wait(); ckpt.close()
        print("saved", step, flush=True)
        sys.exit(0)
    if flag.requested and step % 50 == 0:
        print("flagged", flush=True)
    time.sleep(0.002)
"""


def _start_loop(tmp_path, mode):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_LOOP, str(tmp_path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert p.stdout.readline().strip() == "ready"
    return p


def test_sigterm_saves_current_step_and_exits_cleanly(tmp_path):
    p = _start_loop(tmp_path, "save")
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=25)
    assert p.returncode == 0, err[-2000:]
    step = int(out.split("saved")[1])
    assert 20 <= step < 1000  # a forced save off the 1000-step interval
    ckpt = Checkpointer(tmp_path)
    assert ckpt.all_steps() == [step]
    state, extra, rstep = ckpt.restore(
        {"w": jax.ShapeDtypeStruct((4,), jnp.float32), "step": jax.ShapeDtypeStruct((), jnp.int32)}
    )
    assert rstep == step and extra == {"step": step} and int(state["step"]) == step
    np.testing.assert_array_equal(state["w"], np.full(4, float(step), np.float32))


def test_second_sigint_exits_hard(tmp_path):
    p = _start_loop(tmp_path, "ignore")
    p.send_signal(signal.SIGINT)
    assert p.stdout.readline().strip() == "flagged"  # first SIGINT only set the flag
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=25)
    assert p.returncode == -signal.SIGINT


def test_handler_only_sets_flag_and_uninstalls():
    before = signal.getsignal(signal.SIGTERM)
    flag = install_preemption_handler()
    try:
        assert not flag.requested
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.time() + 5
        while not flag.requested and time.time() < deadline:
            time.sleep(0.01)
        assert flag.requested and flag.signum == signal.SIGTERM
    finally:
        flag.uninstall()
    assert signal.getsignal(signal.SIGTERM) == before
