"""The GPU side-by-side check, prepared on the CPU (benchmarks/gpu_side_by_side.sh, docs/gpu_check.md).

* the PyTorch reference with ``--device=cpu``, and its CUDA branch's bookkeeping (synchronisation,
  peak-memory fields) against a stand-in ``torch.cuda``;
* the FLOP count from layer shapes (``benchmarks/flops.py``) against XLA's CPU cost analysis:
  exactly for each kind of convolution and its gradients, within 3 % for a whole tiny GAN step;
* the synthetic CUB-layout birds, prepared and read back by the loader;
* the script's dry run (CPU, tiny sizes) through the side-by-side and ``train.py`` stages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from tests.paths import REPO

BENCH = os.path.join(REPO, "benchmarks")
sys.path.insert(0, BENCH)

import flops  # noqa: E402


# ----------------------------------------------------------------------------- torch reference
def test_torch_reference_cpu(tmp_path):
    pytest.importorskip("torch")
    import torch_reference as tr

    out = tmp_path / "t.json"
    res = tr.main(["--preset=tiny64", "--batch_size=2", "--steps=1", "--threads=1",
                   "--device=cpu", f"--json={out}"])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["images_per_s"] == pytest.approx(2 / saved["step_s_median"])
    for key in ("preset", "impl", "batch_size", "dtype", "steps", "step_s_median", "images_per_s",
                "device", "device_memory", "peak_rss_mb"):  # fmt: skip
        assert key in saved, key  # the keys train_step.py writes, same meaning
    assert saved["impl"] == "torch" and saved["device"].startswith("cpu")
    assert saved["max_memory_allocated"] is None and saved["device_memory"] == {}
    assert np.isfinite(res["last_loss"])


def test_torch_reference_cuda_branch_bookkeeping(monkeypatch):
    """The CUDA path's synchronisation and memory fields, on CPU tensors and a fake torch.cuda."""
    torch = pytest.importorskip("torch")
    import torch_reference as tr

    calls = {"sync": 0, "reset": 0}
    peak = iter(range(1000, 10**6, 1000))
    monkeypatch.setattr(tr, "tensor_device", lambda device: "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "synchronize", lambda: calls.__setitem__("sync", calls["sync"] + 1)
    )
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: calls.__setitem__("reset", calls["reset"] + 1))  # fmt: skip
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: next(peak))
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 123)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "Fake H200")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    res = tr.run("tiny64", 2, 2, 1, device="cuda", warmup=1)
    assert calls["reset"] == 2  # at the start, and after the warm-up
    assert calls["sync"] == 1 + 2 * 2  # after the warm-up, around each timed step
    assert torch.backends.cudnn.benchmark is True and res["cudnn_benchmark"] is True
    assert res["max_memory_allocated"] == 2000  # max(warm-up peak 1000, steady peak 2000)
    assert res["max_memory_allocated_steady"] == 2000
    assert res["device_memory"] == {"peak_bytes_in_use": 2000}
    assert res["max_memory_reserved"] == 123
    assert res["device_kind"] == "Fake H200" and res["device"].startswith("cuda: Fake H200")
    assert {"cudnn_allow_tf32", "matmul_allow_tf32"} <= set(res)


# ----------------------------------------------------------------------------- FLOPs
_DN = ("NHWC", "HWIO", "NHWC")
_S = jax.ShapeDtypeStruct
CONVS = {  # name: (input, kernel, conv kwargs) - every kind the networks and their gradients use
    "4x4_stride2": ((2, 32, 30, 8), (4, 4, 8, 16), dict(window_strides=(2, 2), padding=((1, 1), (1, 1)))),
    "3x3": ((2, 16, 15, 16), (3, 3, 16, 16), dict(window_strides=(1, 1), padding=((1, 1), (1, 1)))),
    "1x7_asymmetric": ((2, 16, 15, 16), (1, 7, 16, 32), dict(window_strides=(1, 1), padding=((0, 3), (3, 0)))),
    "dilated_grouped": ((2, 16, 15, 32), (3, 3, 16, 32), dict(window_strides=(1, 1), padding=((2, 2), (2, 2)), rhs_dilation=(2, 2), feature_group_count=2)),
    "3x3_stride2_valid": ((2, 35, 35, 8), (3, 3, 8, 8), dict(window_strides=(2, 2), padding=((0, 0), (0, 0)))),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONVS))
def test_flops_convolution_rules_equal_xla(name):
    """Forward and both gradients (transposed/dilated convolutions): the count equals XLA's."""
    x_shape, w_shape, kw = CONVS[name]
    x, w = _S(x_shape, jnp.float32), _S(w_shape, jnp.float32)

    def f(w, x):
        y = lax.conv_general_dilated(x, w, dimension_numbers=_DN, **kw)
        return jnp.sum(y.reshape(y.shape[0], -1) @ jnp.ones((y[0].size, 3)))

    for fn in (f, jax.grad(f, argnums=(0, 1))):
        c = flops.count(fn, w, x, gpu=False)
        xla = flops.xla_cpu_flops(c.pop("jaxpr"), w, x)
        assert c["flops_total"] == pytest.approx(xla, rel=2e-3), (name, c, xla)
        assert c["flops"] <= xla


def test_flops_gpu_formulation_counts_the_direct_upsample_conv():
    """Traced as on a GPU, the upsample + 3x3 conv is the direct form (36 multiply-adds per input
    pixel and channel pair, padding excepted); on the CPU the phase form does fewer."""
    from attngan_jax.models import layers

    b, h, ci, co = 2, 16, 8, 4
    x, w = _S((b, h, h, ci), jnp.float32), _S((3, 3, ci, co), jnp.float32)
    gpu = flops.count(layers.upsample_conv3x3, x, w, gpu=True)
    cpu = flops.count(layers.upsample_conv3x3, x, w, gpu=False)
    side = 2 * h
    pairs = (3 * side - 2) ** 2  # valid (output, kernel) pairs per image: padding excluded
    assert gpu["num_conv"] == 1 and gpu["flops_conv"] == 2 * b * ci * co * pairs
    assert cpu["flops_conv"] < 0.6 * gpu["flops_conv"]


@pytest.mark.slow
def test_flops_tiny_gan_step_within_3_percent_of_xla_cpu():
    """A whole GAN step (tiny64: 1 stage, small trunk, G/D/text/image networks, forward and
    backward): convolutions + matmuls are 85-100 % of XLA's CPU FLOPs and, with the elementwise
    estimate, the total is within 3 % (XLA simplifies and fuses elementwise work its own way)."""
    res = flops.preset_flops("tiny64", 2, xla_check=True)
    xla = res["xla_cpu_flops"]
    assert res["num_conv"] > 20 and res["num_dot"] > 5
    assert 0.85 * xla <= res["flops"] <= xla
    assert res["flops_total"] == pytest.approx(xla, rel=0.03)


# ----------------------------------------------------------------------------- synthetic birds
def test_synthetic_birds_prepare_and_load(tmp_path):
    import make_synthetic_birds as msb

    from attngan_jax.data import pipeline
    from attngan_jax.data.original import CUBSource

    cub = str(tmp_path / "cub")
    info = msb.make_cub(cub, num_train=6, num_test=2, workers=1)
    assert info["vocab_size"] == msb.VOCAB_SIZE and 5_000 < info["jpeg_bytes_mean"] < 200_000
    src = CUBSource(cub)
    ex = next(iter(src.examples("train")))
    assert len(ex.captions) == 10 and ex.image.ndim == 3 and min(ex.image.shape[:2]) > 100
    prepared = msb.prepare(cub, str(tmp_path / "data"), "jpeg")
    loader = pipeline.make_loader(prepared["data_path"], "train", global_batch_size=2,
                                  image_sizes=(64, 128), shard_index=0, shard_count=1)  # fmt: skip
    batch = next(iter(loader))
    assert batch["image_128"].shape == (2, 128, 128, 3) and batch["captions"].shape == (2, 18)


# ----------------------------------------------------------------------------- the script
@pytest.mark.slow
def test_gpu_side_by_side_dry_run(tmp_path):
    """The script on the CPU with tiny sizes: the side-by-side stages, the FLOP count and the
    synthetic birds in the background, the loader, and train.py on the birds data; the summary
    has every figure (the shapes and bfloat16 stages are left out here to stay under ~90 s: the
    shapes demo is train.py's own tiny run, tested in tests/train)."""
    out, work = tmp_path / "out", tmp_path / "work"
    stages = "env flops synthetic_birds torch_1 ours_f32_2 loader birds_train"
    env = dict(os.environ, OUT=str(out), WORK=str(work), PYTHON=sys.executable, STAGES=stages)
    p = subprocess.run(["bash", os.path.join(BENCH, "gpu_side_by_side.sh"), "--dry-run"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=400)  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    st = s["stages"]
    for name in stages.split():
        assert st[name]["status"] == "ok", (name, st[name], p.stdout[-3000:])
    assert "ours_bf16_1" not in st and "shapes" not in st  # not asked for
    assert s["run"]["dry_run"] == 1 and s["preset"] == "tiny64"
    assert s["original_f32_images_per_s"] > 0 and s["ours_f32_images_per_s"] > 0
    assert s["speedup_f32"] == pytest.approx(
        s["ours_f32_images_per_s"] / s["original_f32_images_per_s"]
    )
    assert s["flops"]["flops"] > 1e8 and s["roofline"]["ours_f32_2"]["achieved_tflops"] > 0
    rv = s["real_vs_cached"]
    assert rv["real_step_s"] > 0 and rv["cached_step_s_pipelined"] > 0
    assert rv["ratio"] == pytest.approx(rv["real_step_s"] / rv["cached_step_s_pipelined"])
    assert s["birds_train"]["final_step"] == 4 and s["loader"]["rows"][0]["examples_per_s"] > 0
    assert s["targets"]["real_data_within_10pct"] in (True, False)
    files = sorted(os.listdir(out))
    assert len(files) <= 8 and {"summary.json", "summary.txt", "logs.tar.gz"} <= set(files)
    text = (out / "summary.txt").read_text()
    assert (
        "DRY RUN" in text and "README GPU rows" in text and "| cpu, attngan-jax, float32 |" in text
    )
