"""Does the input pipeline keep up? The shapes demo's GAN step fed by the real grain loader vs a
cached batch (same config, same device). Prints the median step times and the ratio.

    python benchmarks/pipeline_overhead.py [--steps=60] [--data_dir=data/shapes] [--worker_count=0]
        [--cache_images=0|1] [--warm_batches=250]

``--cache_images`` overrides the demo's ``data.cache_images``; ``--warm_batches`` batches are read
before timing (250 = one epoch of the GAN phase, after which the cache holds every record). The
loader alone is timed too (``loader_ms``: median per batch, no step).
"""

import argparse
import statistics
import time

import jax

import attngan_jax  # noqa: F401
from attngan_jax.configs import shapes as shapes_config
from attngan_jax.runtime import sharding
from attngan_jax.train import experiment, gan


def main():
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--data_dir", default="data/shapes")
    ap.add_argument("--worker_count", type=int, default=0)
    ap.add_argument("--cache_images", type=int, choices=(0, 1), default=None)
    ap.add_argument("--warm_batches", type=int, default=0)
    a = ap.parse_args()
    config = shapes_config.build("attngan", "full")
    config.data.data_dir = a.data_dir
    config.data.worker_count = a.worker_count
    if a.cache_images is not None:
        config.data.cache_images = bool(a.cache_images)
    path = experiment.prepare_data(config)
    words = experiment.load_vocabulary(path).ixtoword
    from attngan_jax.models import factory

    spec = factory.ModelSpec.from_config(config, vocab_size=len(words))
    size = max(spec.image_sizes)
    params, stats = factory.init_encoders(spec, jax.random.key(1), size)
    enc = {
        "text": {"params": params["text"]},
        "image": {"params": params["image"], "batch_stats": stats},
    }
    mesh = sharding.make_mesh()
    state = gan.init_state(config, spec, jax.random.key(0), enc)
    step = jax.jit(gan.make_train_step(config, spec, words), donate_argnums=(0,))
    it = iter(experiment.make_loader(config, path, "train", config.gan.batch_size, 0, True))
    cached = sharding.to_global(next(it), mesh)
    for _ in range(a.warm_batches):
        next(it)
    loader_times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        next(it)
        loader_times.append(time.perf_counter() - t)
    for _ in range(3):  # compile + warm-up
        state, m = step(state, cached)
    jax.block_until_ready(m)
    res = {}
    for name in ("cached", "loader", "cached2", "loader2"):
        times = []
        for _ in range(a.steps):
            t = time.perf_counter()
            batch = cached if name.startswith("cached") else sharding.to_global(next(it), mesh)
            state, m = step(state, batch)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t)
        res[name] = statistics.median(times)
    cached_s = min(res["cached"], res["cached2"])
    loader_s = min(res["loader"], res["loader2"])
    print({k: round(v, 4) for k, v in res.items()})
    print(
        f"loader alone: {1000 * statistics.median(loader_times):.1f} ms per batch "
        f"(cache_images={config.data.cache_images}, after {a.warm_batches} batches)"
    )
    print(
        f"median s/step: cached batch {cached_s:.4f}, real loader {loader_s:.4f}, "
        f"ratio {loader_s / cached_s:.3f} (worker_count={a.worker_count})"
    )


if __name__ == "__main__":
    main()
