"""Throughput of CLIP image embeddings for the CLIP metrics: our JAX path against open_clip (torch).

    taskset -c 1 python benchmarks/clip_eval.py --images=64 --batch=32

Both embed the same ``--images`` generated-like images (256 x 256, float in [-1, 1]) with ViT-B/32
(full size, the same random weights: open_clip's random model converted with
``attngan_jax.convert.clip``), batch ``--batch``, with the same preprocessing: ``(x + 1) / 2``,
bicubic resize to 224 (antialiased: ``jax.image.resize`` / torch ``F.interpolate(antialias=True)``,
equal to 1e-6), CLIP's mean/std. JAX runs preprocessing + encoder as one compiled function
(compiled before timing); torch runs under ``inference_mode`` with as many threads as cores it may use.
JAX runs twice: as the evaluator does (``clip_metrics.encoders``: XLA:CPU's concurrency-optimised
scheduler turned back on for this compilation) and as a plain ``jax.jit`` under the entry points'
XLA flags (``runtime/xla_flags.py``). Prints images/s of each (best of ``--repeats`` passes over
the images, the contenders' passes interleaved), the time 30,000 images would take, and the
largest relative difference of the embeddings (a check that both did the same).
Needs torch and open-clip-torch (the tests' install, docs/clip.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from attngan_jax.runtime import host_memory, xla_flags

if __name__ == "__main__":
    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend (kept by the restart)
    host_memory.reexec_with_malloc_tunables()
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from attngan_jax.convert import clip as convert_clip  # noqa: E402
from attngan_jax.eval.evaluators import clip_metrics  # noqa: E402
from attngan_jax.models import clip  # noqa: E402
from attngan_jax.models.clip_preprocess import CLIP_MEAN, CLIP_STD  # noqa: E402


def _best_times(contenders: dict, batches, repeats: int) -> dict[str, float]:
    """Best wall time of a pass over every batch, per contender; passes interleaved (A, B, C, A,
    ...) so that the load of a shared machine drifts into every contender alike."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            for b in batches:
                fn(b)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=256, help="side of the generated images")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="ViT-B-32")
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from open_clip_ref import random_clip  # the tests' import of open_clip without torchvision

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    spec = clip.preset(a.model)
    ref = random_clip(spec, seed=0)
    variables = jax.device_put(convert_clip.convert_state_dict(ref.state_dict(), spec))
    size = spec.image_size

    enc_img = clip_metrics.encoders(spec, "openai")[0]  # what clip_r_precision runs

    def ours(x):  # (B, S, S, 3) in [-1, 1] -> (B, E)
        return enc_img(variables, x)

    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def theirs(x):  # the same preprocessing in torch, then open_clip's encode_image
        with torch.inference_mode():
            t = torch.from_numpy(x).permute(0, 3, 1, 2) * 0.5 + 0.5
            t = F.interpolate(t, size=(size, size), mode="bicubic", antialias=True)
            return ref.encode_image((t - mean) / std)

    rng = np.random.default_rng(0)
    imgs = np.tanh(rng.normal(size=(a.images, a.size, a.size, 3))).astype(np.float32)
    batches = [imgs[i : i + a.batch] for i in range(0, a.images, a.batch)]
    t0 = time.perf_counter()
    got = np.asarray(jax.block_until_ready(ours(batches[0])))  # compiles
    compile_s = time.perf_counter() - t0
    for b in batches[1:]:  # a last partial batch compiles its own shape
        jax.block_until_ready(ours(b))
    plain = enc_img.jitted  # the same function compiled with the process's XLA flags only
    for b in batches:
        jax.block_until_ready(plain(variables, b))
    want = theirs(batches[0]).numpy()
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    contenders = {
        "jax (evaluator: jit, scheduler on)": lambda b: jax.block_until_ready(ours(b)),
        "jax (entry-point XLA flags only)": lambda b: jax.block_until_ready(plain(variables, b)),
        "open_clip (torch)": theirs,
    }
    times = _best_times(contenders, batches, a.repeats)
    print(f"{a.model}, {a.images} images of {a.size} px, batch {a.batch}, {threads} thread(s), "
          f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}")  # fmt: skip
    print(f"embeddings: max |jax - open_clip| / max |open_clip| = {rel:.2e}")
    print(f"jax compile (first batch): {compile_s:.1f} s")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}")
    for name, t in times.items():
        ips = a.images / t
        print(f"{name:36s} {ips:7.2f} images/s   30,000 images: {30000 / ips / 60:6.1f} min")
    t_torch = times["open_clip (torch)"]
    for name in list(times)[:2]:
        print(f"{name} / open_clip throughput: {t_torch / times[name]:.2f}x")


if __name__ == "__main__":
    main()
