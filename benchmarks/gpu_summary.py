"""The summary of ``gpu_side_by_side.sh``: one JSON, one table, the README's GPU rows.

    python benchmarks/gpu_summary.py --work=WORK --out=OUT

Reads ``WORK/results`` (each stage's JSON, ``stages.jsonl``, ``flops.json``, ``loader.json``,
``env.json``) and the TensorBoard events of the ``train.py`` runs in ``WORK``; writes
``OUT/summary.json`` and ``OUT/summary.txt`` and prints the latter. Every figure that a stage did
not produce is ``null`` with the stage's status, so a partial run still summarises.

Figures:

* images/s of the original (each ``torch_*`` run; their median) and of ours (float32 and bfloat16,
  median of their runs), and ours / the original's float32 (target >= 3x each).
* peak device memory: the original's ``max_memory_allocated`` over the whole run and in the
  steady state after the warm-up (cuDNN benchmark trials excluded); ours ``peak_bytes_in_use``
  with preallocation off, from the run that read its step from the compilation cache (``*_2``:
  no autotuning) where there is one (target: no more than the original's).
* the roofline: FLOPs from the layer shapes (``flops.py``; XLA's GPU cost analysis leaves out
  cuDNN's convolutions), achieved TFLOP/s and the fraction of the datasheet peak: float32 against
  the TF32 tensor-core peak (XLA and cuDNN run float32 convolutions as TF32 by default) and the
  FP32 CUDA-core peak, bfloat16 against the BF16 dense peak; XLA's bytes accessed against HBM
  bandwidth.
* real data vs a cached batch: ``train.py``'s step time (TensorBoard ``examples_per_s`` of each
  logging interval after the first, which holds the first step's start-up; median) against
  ``train_step.py``'s pipelined cached-batch step of the same network and batch (target <= 1.10).
* the loader alone (examples/s per grain worker count) against the images/s the step consumes.
* the shapes demo: final step, R-precision and caption fidelity, its GAN steps/s.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as bc  # noqa: E402

GB = 1e9


def _load(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stages(res_dir: str) -> dict[str, dict]:
    """``stages.jsonl`` as ``{name: record}`` (the last record of a name wins)."""
    out = {}
    try:
        with open(os.path.join(res_dir, "stages.jsonl")) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue
                    out[r["name"]] = r
    except OSError:
        pass
    return out


def read_scalars(tb_dir: str, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of one scalar tag from the TensorBoard event files in ``tb_dir``.

    Event files are TFRecords (8-byte length, 4-byte CRC, the ``Event`` proto, 4-byte CRC); the
    proto is tensorboardX's (a dependency of the package).
    """
    try:
        from tensorboardX.proto import event_pb2
    except ImportError:
        return []
    out = []
    for path in sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        i = 0
        while i + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            i += 12
            ev = event_pb2.Event.FromString(data[i : i + n])
            i += n + 4
            for v in ev.summary.value:
                if v.tag == tag:
                    out.append((int(ev.step), float(v.simple_value)))
    return sorted(out)


def train_run(workdir: str, batch: int) -> dict | None:
    """Step time of a ``train.py`` run from its logging intervals; its summary and evaluation."""
    if not os.path.isdir(workdir):
        return None
    tb = os.path.join(workdir, "tensorboard")
    if not os.path.isdir(tb):
        tb = os.path.join(workdir, "attngan", "tensorboard")
    rates = read_scalars(tb, "examples_per_s")
    later = [r for _, r in rates[1:]] or [r for _, r in rates]
    summary = _load(os.path.join(workdir, "summary.json")) or {}
    out = {
        "workdir": workdir,
        "final_step": summary.get("final_step"),
        "examples_per_s_intervals": rates,
        "examples_per_s_median": statistics.median(later) if later else None,
        "step_s": batch / statistics.median(later) if later else None,
        "evaluation": summary.get("evaluation"),
    }
    return out


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def _peak(r: dict | None):
    return ((r or {}).get("device_memory") or {}).get("peak_bytes_in_use")


def summarize(work: str) -> dict:
    """Everything in one dict (see the module docstring)."""
    res_dir = os.path.join(work, "results")
    st = stages(res_dir)
    run = _load(os.path.join(res_dir, "run.json")) or {}
    env = _load(os.path.join(res_dir, "env.json")) or {}
    runs = {n: _load(os.path.join(res_dir, f"{n}.json"))
            for n in ("torch_1", "torch_2", "ours_f32_1", "ours_f32_2", "ours_bf16_1",
                      "ours_bf16_2")}  # fmt: skip
    batch = int(run.get("batch") or next((r["batch_size"] for r in runs.values() if r), 1))
    ips = {n: (r or {}).get("images_per_s") for n, r in runs.items()}
    torch_ips = _median([ips["torch_1"], ips["torch_2"]])
    f32_ips = _median([ips["ours_f32_1"], ips["ours_f32_2"]])
    bf16_ips = _median([ips["ours_bf16_1"], ips["ours_bf16_2"]])

    # memory: ours from the cached-compile run (no autotuning scratch) where there is one
    def ours_peak(dtype):
        warm, cold = runs[f"ours_{dtype}_2"], runs[f"ours_{dtype}_1"]
        if _peak(warm) is not None:
            return _peak(warm), f"ours_{dtype}_2 (step read from the compilation cache)"
        if _peak(cold) is not None:
            return _peak(cold), f"ours_{dtype}_1 (includes XLA's compile-time autotuning)"
        return None, None

    t_runs = [r for r in (runs["torch_1"], runs["torch_2"]) if r]
    torch_peak = max((r["max_memory_allocated"] for r in t_runs
                      if r.get("max_memory_allocated") is not None), default=None)  # fmt: skip
    torch_steady = max((r["max_memory_allocated_steady"] for r in t_runs
                        if r.get("max_memory_allocated_steady") is not None), default=None)  # fmt: skip
    f32_peak, f32_src = ours_peak("f32")
    bf16_peak, bf16_src = ours_peak("bf16")

    # roofline
    fl = _load(os.path.join(res_dir, "flops.json")) or {}
    flops = fl.get("flops") if fl.get("batch_size") == batch else None
    kind = env.get("jax_device") or env.get("torch_device") or ""
    peak = bc.gpu_peak(kind) if kind else None

    def roof(name, dtype):
        r = runs[name]
        if not r or not flops:
            return None
        step = r["step_s_median"]
        out = {"step_s": step, "achieved_tflops": flops / step / 1e12}
        if peak:
            if dtype == "bfloat16":
                out["peak_tflops"] = peak["peak_flops_bfloat16"] / 1e12
                out["peak_basis"] = "BF16 tensor core, dense"
            else:
                out["peak_tflops"] = peak["peak_flops_float32"] / 1e12
                out["peak_basis"] = "TF32 tensor core, dense (float32 convs run as TF32)"
                out["fraction_of_fp32_cuda_core_peak"] = (
                    flops / step / peak["peak_flops_float32_cuda_cores"]
                )
            out["fraction_of_peak"] = flops / step / (out["peak_tflops"] * 1e12)
            out["compute_bound_s"] = flops / (out["peak_tflops"] * 1e12)
            nbytes = r.get("bytes_accessed")
            if nbytes:
                out["memory_bound_s"] = nbytes / peak["bandwidth_bytes_per_s"]
            out["bound_s"] = max(out["compute_bound_s"], out.get("memory_bound_s", 0.0))
            out["measured_over_bound"] = step / out["bound_s"]
        return out

    roofline = {n: roof(n, d) for n, d in (("torch_1", "float32"), ("torch_2", "float32"),
                                            ("ours_f32_1", "float32"), ("ours_f32_2", "float32"),
                                            ("ours_bf16_1", "bfloat16"),
                                            ("ours_bf16_2", "bfloat16"))}  # fmt: skip

    # real data vs cached batch
    cached_run = runs["ours_f32_2"] or runs["ours_f32_1"]
    cached = (cached_run or {}).get("pipelined_step_s")
    cached_sync = (cached_run or {}).get("step_s_median")
    birds = train_run(os.path.join(work, "birds_run"), batch)
    birds_w = train_run(os.path.join(work, "birds_run_workers"), batch)
    loader = _load(os.path.join(res_dir, "loader.json"))
    shapes = train_run(os.path.join(work, "shapes_run"), 16)
    synth = _load(os.path.join(res_dir, "synthetic_birds.json"))
    real = (birds or {}).get("step_s")
    out = {
        "run": run,
        "device": {
            k: env.get(k)
            for k in (
                "jax_device",
                "torch_device",
                "python",
                "jax",
                "torch",
                "torch_cuda",
                "jax_platform",
            )
        },  # fmt: skip
        "missing_modules": env.get("missing"),
        "stages": st,
        "preset": run.get("preset"),
        "batch_size": batch,
        "images_per_s": ips,
        "original_f32_images_per_s": torch_ips,
        "ours_f32_images_per_s": f32_ips,
        "ours_bf16_images_per_s": bf16_ips,
        "speedup_f32": _ratio(f32_ips, torch_ips),
        "speedup_bf16": _ratio(bf16_ips, torch_ips),
        "memory": {
            "original_peak_bytes": torch_peak,
            "original_peak_bytes_steady": torch_steady,
            "ours_f32_peak_bytes": f32_peak,
            "ours_f32_source": f32_src,
            "ours_bf16_peak_bytes": bf16_peak,
            "ours_bf16_source": bf16_src,
            "ours_f32_over_original": _ratio(f32_peak, torch_peak),
            "ours_f32_over_original_steady": _ratio(f32_peak, torch_steady),
            "ours_bf16_over_original": _ratio(bf16_peak, torch_peak),
            "ours_bf16_over_original_steady": _ratio(bf16_peak, torch_steady),
            "xla_memory_analysis_f32": (cached_run or {}).get("memory_analysis"),
        },
        "flops": {
            k: fl.get(k)
            for k in (
                "flops",
                "flops_conv",
                "flops_dot",
                "flops_elementwise",
                "num_conv",
                "num_dot",
            )
        },  # fmt: skip
        "peak": peak,
        "roofline": roofline,
        "real_vs_cached": {
            "real_step_s": real,
            "cached_step_s_pipelined": cached,
            "cached_step_s_synced": cached_sync,
            "ratio": _ratio(real, cached),
            "workers_run": birds_w,
            "workers_ratio": _ratio((birds_w or {}).get("step_s"), cached),
        },
        "birds_train": birds,
        "synthetic_birds": synth,
        "loader": loader,
        "step_needs_images_per_s": f32_ips,
        "shapes": shapes,
    }
    out["targets"] = {
        "speedup_f32_ge_3": _ge(out["speedup_f32"], 3.0),
        "speedup_bf16_ge_3": _ge(out["speedup_bf16"], 3.0),
        "memory_f32_le_original": _le(f32_peak, torch_peak),
        "memory_bf16_le_original": _le(bf16_peak, torch_peak),
        "memory_f32_le_original_steady": _le(f32_peak, torch_steady),
        "real_data_within_10pct": _le(out["real_vs_cached"]["ratio"], 1.10),
        "shapes_demo_finished": None if not shapes else shapes.get("final_step") is not None,
    }
    return out


def _ge(a, b):
    return None if a is None else bool(a >= b)


def _le(a, b):
    return None if a is None or b is None else bool(a <= b)


def _f(x, fmt=".1f", scale=1.0, unit=""):
    return "-" if x is None else f"{x / scale:{fmt}}{unit}"


def table(s: dict) -> str:
    """The human-readable summary (also ``summary.txt``)."""
    dev = s["device"].get("jax_device") or s["device"].get("torch_device") or "?"
    lines = [f"GPU side by side: {s['preset']} batch {s['batch_size']} on {dev} "
             f"(jax {s['device'].get('jax')}, torch {s['device'].get('torch')})"]  # fmt: skip
    if s["run"].get("dry_run"):
        lines.append("DRY RUN (CPU, tiny sizes; the PyTorch side runs Inception-v3, ours the small "
                     "trunk): the figures check the plumbing, they compare nothing")  # fmt: skip
    lines.append("")
    if s.get("missing_modules"):
        lines.append(f"missing modules: {', '.join(s['missing_modules'])}")
    lines.append(f"{'stage':<22}{'status':<9}{'s':>6}  note")
    for name, r in s["stages"].items():
        lines.append(f"{name:<22}{r['status']:<9}{r['seconds']:>6}  {r.get('reason', '')[:90]}")
    lines += ["", f"{'run':<13}{'img/s':>9}{'s/step':>9}{'peak GB':>9}{'TFLOP/s':>9}"
              f"{'% peak':>8}{'x bound':>8}  peak basis"]  # fmt: skip
    for name, r in s["images_per_s"].items():
        if r is None:
            continue
        run = _load_run(s, name)
        rf = s["roofline"].get(name) or {}
        peak = run.get("max_memory_allocated") if name.startswith("torch") else _peak(run)
        lines.append(
            f"{name:<13}{_f(r):>9}{_f(run.get('step_s_median'), '.4f'):>9}"
            f"{_f(peak, '.2f', GB):>9}{_f(rf.get('achieved_tflops'), '.3g'):>9}"
            f"{_f(rf.get('fraction_of_peak'), '.1%'):>8}{_f(rf.get('measured_over_bound'), '.1f'):>8}"
            f"  {rf.get('peak_basis', '')}"
        )
    m = s["memory"]
    rv = s["real_vs_cached"]
    lines += [
        "",
        f"original f32 {_f(s['original_f32_images_per_s'])} img/s; ours f32 "
        f"{_f(s['ours_f32_images_per_s'])} ({_f(s['speedup_f32'], '.2f')}x), bf16 "
        f"{_f(s['ours_bf16_images_per_s'])} ({_f(s['speedup_bf16'], '.2f')}x)   [target >= 3x]",
        f"peak memory: original {_f(m['original_peak_bytes'], '.2f', GB)} GB "
        f"(steady {_f(m['original_peak_bytes_steady'], '.2f', GB)}), ours f32 "
        f"{_f(m['ours_f32_peak_bytes'], '.2f', GB)} GB, bf16 {_f(m['ours_bf16_peak_bytes'], '.2f', GB)}"
        f" GB   [target <= original]",
        f"FLOPs per step (layer shapes): {_f(s['flops'].get('flops'), '.1f', 1e9)} GFLOP "
        f"({s['flops'].get('num_conv')} convolutions, {s['flops'].get('num_dot')} matmuls)",
        f"train.py real data {_f(rv['real_step_s'], '.4f')} s/step vs cached batch "
        f"{_f(rv['cached_step_s_pipelined'], '.4f')} (synced {_f(rv['cached_step_s_synced'], '.4f')})"
        f": {_f(rv['ratio'], '.3f')}x   [target <= 1.10]"
        + (f"; with grain workers {_f(rv['workers_ratio'], '.3f')}x" if rv["workers_run"] else ""),
    ]
    if s.get("loader"):
        rows = ", ".join(f"{r['workers']} workers {r['examples_per_s']:.0f}/s"
                         for r in s["loader"]["rows"])  # fmt: skip
        lines.append(f"loader alone ({s['loader']['cpu_cores']} cores): {rows}; the f32 step "
                     f"consumes {_f(s['step_needs_images_per_s'], '.0f')} img/s")  # fmt: skip
    sh = s.get("shapes")
    if sh:
        ev = (sh.get("evaluation") or {}).get("metrics") or sh.get("evaluation") or {}
        lines.append(f"shapes demo: final step {sh.get('final_step')}, GAN "
                     f"{_f(sh.get('examples_per_s_median'), '.0f')} examples/s, evaluation "
                     f"{json.dumps(ev)[:300]}")  # fmt: skip
    lines += ["", "targets: " + ", ".join(f"{k}={v}" for k, v in s["targets"].items())]
    lines += ["", "README GPU rows (measured by benchmarks/gpu_side_by_side.sh):", *readme_rows(s)]
    return "\n".join(lines)


def _load_run(s, name):
    return s.get("_runs", {}).get(name) or {}


def readme_rows(s: dict) -> list[str]:
    """Markdown rows for the README's GPU table (device named in every row)."""
    dev = s["device"].get("jax_device") or s["device"].get("torch_device") or "?"
    m = s["memory"]
    rows = [f"| device, {s['preset']} batch {s['batch_size']} | images/s | vs the original (f32) "
            "| peak memory | "
            "TFLOP/s (% of peak) |", "|---|---|---|---|---|"]  # fmt: skip
    spec = (("original (PyTorch), float32", "original_f32_images_per_s", None,
             m["original_peak_bytes_steady"], "torch_2", "torch_1"),
            ("attngan-jax, float32", "ours_f32_images_per_s", "speedup_f32",
             m["ours_f32_peak_bytes"], "ours_f32_2", "ours_f32_1"),
            ("attngan-jax, bfloat16", "ours_bf16_images_per_s", "speedup_bf16",
             m["ours_bf16_peak_bytes"], "ours_bf16_2", "ours_bf16_1"))  # fmt: skip
    for label, ips, sp, peak, r2, r1 in spec:
        rf = s["roofline"].get(r2) or s["roofline"].get(r1) or {}
        speed = f"{s[sp]:.2f}x" if sp and s[sp] is not None else "1x"
        rows.append(
            f"| {dev}, {label} | {_f(s[ips])} | {speed} | {_f(peak, '.2f', GB)} GB | "
            f"{_f(rf.get('achieved_tflops'), '.3g')} ({_f(rf.get('fraction_of_peak'), '.1%')}) |"
        )
    rv = s["real_vs_cached"]
    rows.append(
        f"| {dev}, train.py on synthetic CUB-layout JPEG data | step "
        f"{_f(rv['real_step_s'], '.4f')} s vs cached {_f(rv['cached_step_s_pipelined'], '.4f')} s "
        f"| {_f(rv['ratio'], '.3f')}x | | |"
    )
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    s = summarize(a.work)
    res_dir = os.path.join(a.work, "results")
    s["_runs"] = {n: _load(os.path.join(res_dir, f"{n}.json")) or {} for n in s["images_per_s"]}
    text = table(s)
    s.pop("_runs")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(s, f, indent=1, default=float)
    with open(os.path.join(a.out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    return s


if __name__ == "__main__":
    main()
