"""bfloat16 vs float32: the losses of the first N shapes GAN steps on the same random data.

Usage::

    python benchmarks/studies/bf16_compare.py [--steps=100] [--batch_size=16] [--json=FILE]

Both runs start from the same initial state (parameters are float32 in both; ``config.dtype`` only
sets the compute dtype) and see the same sequence of random batches (captions + images in
[-1, 1]; the step draws z and the CA noise from the state's key, identical in both). For every
metric the relative difference ``|bf16 - f32| / max(|f32|, 1e-3)`` is reported per step, with its
median and max over the steps and its value at a few steps. The trajectories diverge over time (a
GAN amplifies small differences), so the early steps measure the numerics of one step and the
late ones how far the training dynamics drift.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/

import bench_common as bc  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import train_step as ts  # noqa: E402

import attngan_jax  # noqa: E402,F401
from attngan_jax.data import shapes  # noqa: E402
from attngan_jax.train import gan  # noqa: E402


def trajectory(dtype: str, steps: int, batch: int) -> tuple[dict[str, np.ndarray], float, float]:
    """Metrics per step ``{name: (steps,)}``, compile seconds and median step seconds."""
    config = ts.make_config("shapes", dtype)
    _, _, make_args = ts.build("shapes", config, batch)
    state, _ = make_args()
    spec = ts.make_spec("shapes", config)
    step = jax.jit(gan.make_train_step(config, spec, shapes.IXTOWORD), donate_argnums=(0,))
    batches = [ts.make_batch(spec, batch, seed=i) for i in range(steps)]
    t = time.perf_counter()
    compiled = step.lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t
    out, times = {}, []
    for b in batches:
        t = time.perf_counter()
        state, m = compiled(state, b)
        m = jax.device_get(m)
        times.append(time.perf_counter() - t)
        for k, v in m.items():
            out.setdefault(k, []).append(float(v))
    return {k: np.asarray(v) for k, v in out.items()}, compile_s, float(np.median(times[1:]))


def main(argv=None) -> dict:
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    f32, c32, s32 = trajectory("float32", a.steps, a.batch_size)
    b16, c16, s16 = trajectory("bfloat16", a.steps, a.batch_size)
    marks = [i for i in (0, 9, 49, a.steps - 1) if i < a.steps]
    res = {
        "steps": a.steps,
        "batch_size": a.batch_size,
        "device": str(jax.devices()[0]),
        "compile_s": {"float32": c32, "bfloat16": c16},
        "step_s_median": {"float32": s32, "bfloat16": s16},
        "loadavg": bc.loadavg(),
        "metrics": {},
    }
    print(
        f"{'metric':<20}{'median rel':>11}{'max rel':>9}"
        + "".join(f"{'@' + str(i + 1):>9}" for i in marks)
    )
    for k in sorted(f32):
        if k.startswith(("lr_",)):
            continue
        rel = np.abs(b16[k] - f32[k]) / np.maximum(np.abs(f32[k]), 1e-3)
        res["metrics"][k] = {
            "median_rel": float(np.median(rel)),
            "max_rel": float(rel.max()),
            "rel_at": {str(i + 1): float(rel[i]) for i in marks},
            "float32": f32[k].tolist(),
            "bfloat16": b16[k].tolist(),
        }
        print(
            f"{k:<20}{np.median(rel):>11.3g}{rel.max():>9.3g}"
            + "".join(f"{rel[i]:>9.3g}" for i in marks)
        )
    print(f"step s: float32 {s32:.4f}, bfloat16 {s16:.4f}; compile s: {c32:.1f} / {c16:.1f}")
    bc.write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
