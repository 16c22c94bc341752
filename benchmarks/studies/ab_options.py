"""Paired A/B of XLA compiler options on one benchmark preset, in one process.

Usage::

    python benchmarks/studies/ab_options.py --preset=birds64 [--pairs=12] [--batch_size=4] [--json=FILE] \
        xla_cpu_use_fusion_emitters=false [more_option=value ...]

Compiles the preset's step (``train_step.build``: the library's own jitted iteration, random
weights and data) twice from the same lowering: **A** with the process's options (``XLA_FLAGS``
plus the library's CPU flags) and **B** with the given ``DebugOptions`` fields on top
(``Lowered.compile(compiler_options=...)``). It then calls A and B alternately on the same state
(ABAB, then BABA, ...) and prints the medians and the paired difference B - A with its standard
error. Two benchmark processes run minutes apart differ by 10-15 % on a shared 2-core machine;
pairs taken seconds apart cancel most of that drift, so a 2-3 % change is visible after ~12 pairs.

Option values: ``true``/``false``, integers, or strings. The options are first tried on a tiny
function, so one XLA does not know (or a value of the wrong type) is reported with XLA's message
before the preset's compile starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from attngan_jax.runtime import host_memory, xla_flags

if __name__ == "__main__":
    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend (kept by the restart)
    # glibc reads its malloc tunables only at start-up: restart once with them
    host_memory.reexec_with_malloc_tunables()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/

import bench_common as bc  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import train_step  # noqa: E402


def parse_option(text: str) -> tuple[str, bool | int | str]:
    """``name=value`` -> (name, value) with ``true``/``false`` and integers converted."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"expected name=value, got {text!r}")
    name = name.lstrip("-")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    try:
        return name, int(value)
    except ValueError:
        return name, value


def check_options(options: dict) -> None:
    """Raises ``ValueError`` naming the problem if XLA rejects ``options`` (a tiny compile)."""
    try:
        jax.jit(lambda x: x + 1).lower(np.float32(1)).compile(compiler_options=options)
    except jax.errors.JaxRuntimeError as e:
        raise ValueError(f"XLA rejects {options}: {str(e).splitlines()[0]}") from None


def paired_stats(a_ms: np.ndarray, b_ms: np.ndarray) -> dict:
    """Medians of A and B and the paired difference B - A (median, mean, standard error)."""
    d = b_ms - a_ms
    return {
        "a_ms_median": float(np.median(a_ms)),
        "b_ms_median": float(np.median(b_ms)),
        "a_ms_min": float(a_ms.min()),
        "b_ms_min": float(b_ms.min()),
        "diff_ms_median": float(np.median(d)),
        "diff_ms_mean": float(d.mean()),
        "diff_ms_sem": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
        "diff_pct_median": float(100 * np.median(d) / np.median(a_ms)),
    }


def run(preset: str, batch: int, pairs: int, options: dict) -> dict:
    """Compiles A and B, runs ``pairs`` alternating pairs, returns times and statistics."""
    config = train_step.make_config(preset, "float32")
    fn, donate, make_args = train_step.build(preset, config, batch)
    jitted = jax.jit(fn, donate_argnums=donate)
    lowered = jitted.lower(*jax.eval_shape(lambda: make_args()))
    t0 = time.perf_counter()
    compiled_a = lowered.compile()
    t1 = time.perf_counter()
    compiled_b = lowered.compile(compiler_options=options)
    t2 = time.perf_counter()
    del lowered
    host_memory.release_freed_host_memory()
    args = make_args()
    stateful = bool(donate)
    for compiled in (compiled_a, compiled_b):  # warm-up of each
        args = train_step.call_step(compiled, args, stateful)
    times = {"a": [], "b": []}
    for i in range(pairs):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        for key in order:
            compiled = compiled_a if key == "a" else compiled_b
            t = time.perf_counter()
            args = train_step.call_step(compiled, args, stateful)
            times[key].append((time.perf_counter() - t) * 1e3)
    a_ms, b_ms = np.asarray(times["a"]), np.asarray(times["b"])
    return {
        "preset": preset,
        "batch_size": batch,
        "pairs": pairs,
        "options": options,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "device": str(jax.devices()[0].device_kind),
        "compile_s": {"a": t1 - t0, "b": t2 - t1},
        "a_ms": times["a"],
        "b_ms": times["b"],
        **paired_stats(a_ms, b_ms),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", required=True, choices=sorted(bc.PRESETS))
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--json", default=None)
    ap.add_argument("options", nargs="+", help="XLA DebugOptions for B, as name=value")
    a = ap.parse_args(argv)
    if a.pairs < 2:
        ap.error("--pairs must be at least 2")
    try:
        options = dict(parse_option(o) for o in a.options)
        check_options(options)  # before the preset's compile, which takes seconds to minutes
    except ValueError as e:
        ap.error(str(e))
    res = run(a.preset, a.batch_size, a.pairs, options)
    print(
        f"{a.preset}, batch {a.batch_size}, {a.pairs} pairs; B = A + {options}\n"
        f"  compile: A {res['compile_s']['a']:.1f} s, B {res['compile_s']['b']:.1f} s\n"
        f"  step ms: A median {res['a_ms_median']:.1f} (min {res['a_ms_min']:.1f}), "
        f"B median {res['b_ms_median']:.1f} (min {res['b_ms_min']:.1f})\n"
        f"  B - A:   median {res['diff_ms_median']:+.1f} ms ({res['diff_pct_median']:+.1f} %), "
        f"mean {res['diff_ms_mean']:+.1f} ± {res['diff_ms_sem']:.1f} ms (standard error)"
    )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
