"""JAX vs the original (PyTorch) side by side: interleaved processes, medians, load averages.

Usage::

    python benchmarks/compare.py --presets=birds64,birds128,damsm_birds --batch_size=4 \
        [--rounds=3] [--steps=5] [--out=/tmp/attngan_bench] [--compilation_cache=DIR]

Each round runs ``train_step.py`` then ``torch_reference.py`` for every preset, each in its own
process (so peak RSS is per program), alternating the order between rounds so slow drifts in the
machine's load hit both. Reports per preset the median over rounds of each process's median step
time, the median CPU seconds per step, the speed-up ``torch / jax`` (wall and CPU), peak RSS and the
load averages seen. Writes every run's JSON plus ``summary.json`` under ``--out``.

``--compilation_cache=DIR`` runs the JAX side as a second run of ``train.py`` does: one untimed
process per preset first fills JAX's persistent compilation cache in ``DIR``, then every timed
process reads its step from there, so its peak RSS is the training step's, not XLA's compile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_one(
    impl: str, preset: str, batch: int, steps: int, path: str, cache: str | None = None
) -> dict | None:
    """Runs one benchmark process; returns its JSON (None if it failed)."""
    script = "train_step.py" if impl == "jax" else "torch_reference.py"
    cmd = [
        sys.executable,
        os.path.join(HERE, script),
        f"--preset={preset}",
        f"--batch_size={batch}",
        f"--steps={steps}",
        f"--json={path}",
    ]
    if cache and impl == "jax":
        cmd.append(f"--compilation_cache={cache}")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"{impl} {preset} failed:\n{p.stderr[-2000:]}", file=sys.stderr)
        return None
    with open(path) as f:
        return json.load(f)


def summarise(runs: list[dict]) -> dict:
    """Median over processes of step medians, CPU medians, RSS; loads seen."""
    return {
        "step_s": statistics.median(r["step_s_median"] for r in runs),
        "step_s_each": [round(r["step_s_median"], 3) for r in runs],
        "cpu_s": statistics.median(r["cpu_s_median"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "loadavg_1min": [r["loadavg_before"][0] for r in runs],
        "compile_s": statistics.median(sum(r["compile_s"].values()) for r in runs)
        if runs[0]["compile_s"]
        else None,
    }


def main(argv=None) -> dict:
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="birds64,birds128,damsm_birds")
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default="/tmp/attngan_bench")
    ap.add_argument(
        "--compilation_cache",
        default=None,
        help="time the JAX side with a warm persistent compilation cache in this directory",
    )
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    presets = a.presets.split(",")
    results: dict = {p: {"jax": [], "torch": []} for p in presets}
    if a.compilation_cache:
        for p in presets:  # fills the cache; not timed
            path = os.path.join(a.out, f"{p}_jax_fill_cache.json")
            run_one("jax", p, a.batch_size, 1, path, a.compilation_cache)
    for r in range(a.rounds):
        for p in presets:
            order = ("jax", "torch") if r % 2 == 0 else ("torch", "jax")
            for impl in order:
                path = os.path.join(a.out, f"{p}_{impl}_{r}.json")
                res = run_one(impl, p, a.batch_size, a.steps, path, a.compilation_cache)
                if res:
                    results[p][impl].append(res)
                    print(
                        f"round {r} {p:<12} {impl:<6} {res['step_s_median']:.3f} s/step "
                        f"(cpu {res['cpu_s_median']:.2f} s) load {res['loadavg_before']}",
                        flush=True,
                    )
    summary = {}
    print(
        f"\n{'preset':<13}{'jax s':>8}{'torch s':>9}{'speed-up':>9}{'cpu-x':>7}"
        f"{'jax MB':>8}{'torch MB':>9}  loads (1 min)"
    )
    for p in presets:
        if not (results[p]["jax"] and results[p]["torch"]):
            continue
        j, t = summarise(results[p]["jax"]), summarise(results[p]["torch"])
        s = {
            "jax": j,
            "torch": t,
            "speedup_wall": t["step_s"] / j["step_s"],
            "speedup_cpu": t["cpu_s"] / j["cpu_s"],
            "batch_size": a.batch_size,
            "jax_compilation_cache": "warm" if a.compilation_cache else "none",
        }
        summary[p] = s
        print(
            f"{p:<13}{j['step_s']:>8.3f}{t['step_s']:>9.3f}{s['speedup_wall']:>9.2f}"
            f"{s['speedup_cpu']:>7.2f}{j['peak_rss_mb']:>8.0f}{t['peak_rss_mb']:>9.0f}"
            f"  {j['loadavg_1min'] + t['loadavg_1min']}"
        )
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
