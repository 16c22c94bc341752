"""Memory of the streaming metrics does not grow with the number of images.

Streams 50,000 random 16x16x3 "images" in batches of 100 through a cheap stand-in feature function
(fixed random projections to 2048 pool features and 1008 logits), into ``FeatureStats`` and the
streaming Inception Score, printing the peak RSS after 1k, 10k and 50k images.

    .venv/bin/python benchmarks/metrics_memory.py [--num 50000] [--batch 100]
"""

import argparse
import resource
import time

import numpy as np

from attngan_jax.metrics.fid import FeatureStats
from attngan_jax.metrics.inception_score import InceptionScoreAccumulator


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    proj_feat = rng.normal(size=(16 * 16 * 3, 2048)).astype(np.float32) / 28.0
    proj_logit = rng.normal(size=(16 * 16 * 3, 1008)).astype(np.float32) / 28.0

    def features(img):  # stand-in for Inception pool3 / logits
        flat = img.reshape(len(img), -1)
        return np.maximum(flat @ proj_feat, 0.0), flat @ proj_logit

    stats = FeatureStats(2048)
    acc = InceptionScoreAccumulator(args.num, 1008, splits=10, from_logits=True)
    print(
        f"start: peak RSS {peak_rss_mib():.1f} MiB; accumulators hold "
        f"{(stats.nbytes + acc.sum_p.nbytes + acc.sum_plogp.nbytes) / 2**20:.1f} MiB"
    )
    t0, checkpoints = time.time(), {1_000, 10_000, args.num}
    for start in range(0, args.num, args.batch):
        imgs = rng.uniform(-1, 1, size=(min(args.batch, args.num - start), 16, 16, 3)).astype(
            np.float32
        )
        feat, logits = features(imgs)
        stats.update(feat)
        acc.update(logits)
        done = start + len(imgs)
        if done in checkpoints:
            print(f"{done:>6} images: peak RSS {peak_rss_mib():.1f} MiB ({time.time() - t0:.1f} s)")
    mu, sigma = stats.mean_cov()
    is_mean, is_std = acc.result()
    print(
        f"done: mu {mu.shape}, sigma {sigma.shape}, IS {is_mean:.4f} +- {is_std:.4f}, "
        f"peak RSS {peak_rss_mib():.1f} MiB"
    )


if __name__ == "__main__":
    main()
