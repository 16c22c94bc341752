"""Shared pieces of ``train_step.py`` (JAX) and ``torch_reference.py`` (PyTorch): presets, timing
statistics, memory, load average, the device roofline and the result table.

Imports only the standard library and numpy, so both benchmarks (and neither framework) load it.

Roofline peaks (dense, no structured sparsity), from the vendors' datasheets:

* NVIDIA H100 SXM5 (datasheet "NVIDIA H100 Tensor Core GPU", 2023): FP32 67 TFLOP/s (CUDA cores),
  TF32 Tensor Core 989 TFLOP/s *with sparsity* = 494.5 dense, BF16 1,979 with sparsity = 989.5
  dense, HBM3 3.35 TB/s. H100 PCIe: FP32 51, TF32 378 dense, BF16 756 dense, 2.0 TB/s.
* NVIDIA H200 SXM (datasheet 2024): the H100 SXM's compute, HBM3e 4.8 TB/s. H200 NVL (PCIe):
  FP32 60, TF32 417.5 dense, BF16 835.5 dense, 4.8 TB/s.
* NVIDIA A100 SXM 80 GB: FP32 19.5, TF32 156 dense, BF16 312 dense, 2.039 TB/s.

XLA on these GPUs runs float32 convolutions and matmuls as TF32 unless the precision is set to
``highest``, so the float32 bound uses the TF32 peak (the FP32 CUDA-core peak is reported too).

CPU: peak = cores x FLOP/cycle x clock, with FLOP/cycle from the vector units: 32 fp32 FLOP/cycle
for AVX2 + 2 FMA units and for AMD Zen 4 AVX-512 (512-bit ops are split into two 256-bit halves),
64 for Intel cores with two 512-bit FMA units (some Xeon SKUs have one: then this is 2x too high).
bf16 (``avx512_bf16`` ``VDPBF16PS``): 2x the fp32 rate. Bandwidth is measured with a numpy copy of
256 MiB (read + write counted), best of 5; one thread, so a lower bound on what 2 cores reach.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time

# Sizes of the original configurations (reference §2.2); shared by both benchmarks.
BIRDS = dict(
    gf_dim=32,
    df_dim=64,
    emb_dim=256,
    embed_dim=300,
    z_dim=100,
    condition_dim=100,
    r_num=2,
    words_num=18,
    vocab_size=5450,
    lam=5.0,
)
COCO = dict(BIRDS, gf_dim=48, df_dim=96, r_num=3, words_num=12, vocab_size=27297, lam=50.0)
PRESETS = {
    "birds64": dict(BIRDS, kind="gan", num_stages=1),
    "birds128": dict(BIRDS, kind="gan", num_stages=2),
    "birds256": dict(BIRDS, kind="gan", num_stages=3),
    "coco256": dict(COCO, kind="gan", num_stages=3),
    "damsm_birds": dict(BIRDS, kind="damsm", image_size=299),
    "shapes": dict(kind="shapes"),
    "damsm_shapes": dict(kind="damsm_shapes"),
    "sample_birds256": dict(BIRDS, kind="sample", num_stages=3),
    # Plumbing checks on a CPU (gpu_side_by_side.sh --dry-run, tests): tiny widths, one stage; the
    # JAX side with the small image trunk (PyTorch's reference always runs Inception-v3).
    "tiny64": dict(
        BIRDS,
        kind="gan",
        num_stages=1,
        gf_dim=4,
        df_dim=4,
        emb_dim=16,
        embed_dim=16,
        z_dim=8,
        condition_dim=8,
        r_num=1,
        image_trunk="small",
        small_trunk_width=8,
    ),  # fmt: skip
}

GPU_PEAKS = {  # name substring -> (fp32 CUDA-core, tf32 dense, bf16 dense) TFLOP/s, TB/s
    "H200 NVL": (
        60.0,
        417.5,
        835.5,
        4.8,
    ),  # the PCIe card (datasheet: TF32 835 / BF16 1,671 sparse)
    "H200": (67.0, 494.5, 989.5, 4.8),
    "H100 PCIe": (51.0, 378.0, 756.0, 2.0),
    "H100": (67.0, 494.5, 989.5, 3.35),
    "A100": (19.5, 156.0, 312.0, 2.039),
}


def caption_lengths(batch: int, words_num: int) -> list[int]:
    """Descending caption lengths (the original sorts batches), the first one full length."""
    return [max(1, words_num - (3 * i) % words_num) for i in range(batch)]


def loadavg() -> list[float]:
    """``os.getloadavg()`` as a list."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def step_stats(times: list[float], batch: int, cpu: list[float] | None = None) -> dict:
    """Median/min/max wall seconds per step, images/s (from the median) and the median CPU
    seconds per step of this process (``time.process_time``; less sensitive than wall time to
    other processes on the machine, but it counts spinning worker threads)."""
    med = statistics.median(times)
    extra = {"cpu_s_median": statistics.median(cpu)} if cpu else {}
    return {
        **extra,
        "step_s_median": med,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "step_s_all": times,
        "images_per_s": batch / med,
    }


def _cpuinfo() -> dict:
    info = {"model": "", "flags": set(), "mhz": 0.0, "vendor": "", "family": 0, "model_id": 0}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k == "model name" and not info["model"]:
                    info["model"] = v
                elif k == "flags" and not info["flags"]:
                    info["flags"] = set(v.split())
                elif k == "cpu MHz" and not info["mhz"]:
                    info["mhz"] = float(v)
                elif k == "vendor_id" and not info["vendor"]:
                    info["vendor"] = v
                elif k == "cpu family" and not info["family"]:
                    info["family"] = int(v)
                elif k == "model" and not info["model_id"]:
                    info["model_id"] = int(v)
    except OSError:
        pass
    return info


def cpu_bandwidth_gbs(mib: int = 256, repeats: int = 5) -> float:
    """Copy bandwidth in GB/s (bytes read + written) of a ``mib`` MiB numpy copy, best of N."""
    import numpy as np

    a = np.ones(mib * 2**18, np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def cpu_peak(measured_matmul_flops: float | None = None) -> dict:
    """Estimated peak FLOP/s of the CPU cores this process may use (see the module docstring).

    Args:
        measured_matmul_flops: float32 FLOP/s of a large matmul measured in this process. The clock
            in ``/proc/cpuinfo`` is the nominal one; cores that boost beyond it (the 2-core EPYC VMs
            report 2.6 GHz and run a 1024² matmul at ~220 GFLOP/s, 1.3x the nominal peak) would
            otherwise get a bound below what they measurably do. The larger of the two is used.
    """
    info = _cpuinfo()
    cores = len(os.sched_getaffinity(0))
    flags = info["flags"]
    zen4 = info["vendor"] == "AuthenticAMD" and info["family"] == 25 and info["model_id"] >= 0x10
    if "avx512f" in flags and not zen4 and info["vendor"] == "GenuineIntel":
        per_cycle = 64
    elif "avx512f" in flags or ("avx2" in flags and "fma" in flags):
        per_cycle = 32
    else:
        per_cycle = 8
    ghz = info["mhz"] / 1e3 if info["mhz"] else 2.0
    fp32 = cores * per_cycle * ghz * 1e9
    basis = f"{cores} cores x {per_cycle} fp32 FLOP/cycle x {ghz:.2f} GHz" + (
        " (Zen 4: 512-bit ops double-pumped)" if zen4 else ""
    )
    if measured_matmul_flops and measured_matmul_flops > fp32:
        basis = (
            f"measured float32 matmul {measured_matmul_flops / 1e9:.0f} GFLOP/s, above the nominal "
            f"{basis} = {fp32 / 1e9:.0f} GFLOP/s (boost clock)"
        )
        fp32 = measured_matmul_flops
    bf16 = fp32 * (2 if "avx512_bf16" in flags else 1)
    return {
        "name": f"{info['model'] or 'CPU'} ({cores} cores)",
        "peak_flops_float32": fp32,
        "peak_flops_bfloat16": bf16,
        "bandwidth_bytes_per_s": cpu_bandwidth_gbs() * 1e9,
        "basis": basis + "; bandwidth: one-thread numpy copy",
    }


def gpu_peak(device_kind: str) -> dict | None:
    """Datasheet peaks for a GPU ``device_kind`` string (``jax.Device.device_kind``), or None."""
    for key, (fp32, tf32, bf16, tbs) in GPU_PEAKS.items():
        if key.lower() in device_kind.lower():
            return {
                "name": device_kind,
                "peak_flops_float32": tf32 * 1e12,
                "peak_flops_float32_cuda_cores": fp32 * 1e12,
                "peak_flops_bfloat16": bf16 * 1e12,
                "bandwidth_bytes_per_s": tbs * 1e12,
                "basis": f"datasheet ({key}): TF32 {tf32} / BF16 {bf16} TFLOP/s dense, {tbs} TB/s",
            }
    return None


def roofline(peak: dict | None, flops: float, bytes_accessed: float, dtype: str, step_s: float):
    """Roofline time ``max(flops / peak, bytes / bandwidth)`` and ``bound / measured``.

    Returns:
        ``{"bound_s", "compute_bound_s", "memory_bound_s", "measured_over_bound",
        "fraction_of_roofline", ...peak}`` or None without a known peak or cost.
    """
    if not peak or not flops:
        return None
    pf = peak["peak_flops_bfloat16" if dtype == "bfloat16" else "peak_flops_float32"]
    c = flops / pf
    m = (bytes_accessed or 0.0) / peak["bandwidth_bytes_per_s"]
    bound = max(c, m)
    return {
        **peak,
        "compute_bound_s": c,
        "memory_bound_s": m,
        "bound_s": bound,
        "measured_over_bound": step_s / bound,
        "fraction_of_roofline": bound / step_s,
    }


def print_table(rows: list[dict]) -> None:
    """One line per result: preset, framework, batch, dtype, s/step, img/s, compile, RSS, load."""
    head = (
        f"{'preset':<16}{'impl':<7}{'B':>4} {'dtype':<9}{'median s':>10}{'min s':>9}{'max s':>9}"
        f"{'img/s':>8}{'compile s':>10}{'RSS MB':>9}{'roofl.%':>8}  load"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        comp = sum(r.get("compile_s", {}).values()) if r.get("compile_s") else float("nan")
        rf = r.get("roofline") or {}
        frac = 100 * rf["fraction_of_roofline"] if rf else float("nan")
        print(
            f"{r['preset']:<16}{r['impl']:<7}{r['batch_size']:>4} {r['dtype']:<9}"
            f"{r['step_s_median']:>10.3f}{r['step_s_min']:>9.3f}{r['step_s_max']:>9.3f}"
            f"{r['images_per_s']:>8.2f}{comp:>10.2f}{r['peak_rss_mb']:>9.0f}{frac:>8.2f}"
            f"  {r['loadavg_before']}->{r['loadavg_after']}"
        )


def write_json(path: str | None, result: dict) -> None:
    """Writes ``result`` to ``path`` (if given), creating its directory."""
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=float)
