"""Input-pipeline throughput (examples/s) on the shapes dataset for grain worker counts 0/1/2.

Usage::

    python benchmarks/input_pipeline.py [--data_dir=/tmp/attngan_bench] [--batches=20] [--json]
    python benchmarks/input_pipeline.py --data_path=PREPARED --sizes=64,128,256 --batch=20 \
        --workers=0,4,8 [--read_threads=16] [--json_file=F]   # any prepared dataset (e.g. birds)

Prepares small shapes datasets rendered at 256 and at 128 / 64 (reused on later runs), then times
``make_loader`` batches (pyramid (64, 128, 256), (64, 128) and (64,), batch 16, crop/flip off as
shapes requires). The first batch is excluded from the rate (it includes the worker start-up, which
is reported separately as ``first_batch_s``). Each worker process prefetches 2 batches.

``--data_path``: a dataset prepared elsewhere (``make_synthetic_birds.py --data_dir``, or what
``train.py`` prepared) with the training loader's settings (random crop and flip as the dataset's
default, ``read_threads`` as the config's), one row per worker count.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import attngan_jax  # noqa: F401  (XLA flags before JAX starts)
from attngan_jax.data import pipeline, tfds_builders

CONFIGS = (  # (render size, pyramid)
    (256, (64, 128, 256)),
    (128, (64, 128)),
    (64, (64,)),
)


def prepare_shapes(data_dir: str, image_size: int, num_train: int) -> str:
    """Prepares (or reuses) a shapes dataset rendered at ``image_size``."""
    return tfds_builders.prepare(
        "shapes",
        os.path.join(data_dir, f"shapes{image_size}_{num_train}"),
        num_train=num_train,
        num_test=8,
        image_size=image_size,
    )


def measure(
    path: str,
    sizes: tuple[int, ...],
    workers: int,
    batch: int,
    batches: int,
    read_threads: int = 16,
    random_crop: bool | None = False,
) -> dict:
    """Times ``batches`` batches after the first one.

    Returns:
        ``{"first_batch_s", "examples_per_s"}``.
    """
    loader = pipeline.make_loader(
        path,
        "train",
        global_batch_size=batch,
        image_sizes=sizes,
        seed=0,
        worker_count=workers,
        worker_buffer_size=2,
        shard_index=0,
        shard_count=1,
        read_threads=read_threads,
        random_crop=random_crop,
        random_flip=random_crop,
    )
    t0 = time.perf_counter()
    it = iter(loader)
    next(it)
    t1 = time.perf_counter()
    for _ in range(batches):
        next(it)
    t2 = time.perf_counter()
    del it
    return {"first_batch_s": t1 - t0, "examples_per_s": batches * batch / (t2 - t1)}


def main() -> None:
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "attngan_bench"))
    parser.add_argument("--num_train", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--data_path", default="", help="a prepared dataset instead of shapes")
    parser.add_argument("--sizes", default="64,128,256", help="pyramid (with --data_path)")
    parser.add_argument("--read_threads", type=int, default=16)
    parser.add_argument("--json_file", default="")
    args = parser.parse_args()

    if args.data_path:
        sizes = tuple(int(s) for s in args.sizes.split(","))
        rows = []
        for workers in map(int, args.workers.split(",")):
            r = measure(
                args.data_path, sizes, workers, args.batch, args.batches, args.read_threads, None
            )
            rows.append({"workers": workers, "read_threads": args.read_threads, **r})
            print(f"workers {workers:>2}: first batch {r['first_batch_s']:.2f} s, "
                  f"{r['examples_per_s']:.1f} examples/s", flush=True)  # fmt: skip
        out = {"data_path": args.data_path, "pyramid": list(sizes), "batch": args.batch,
               "batches": args.batches, "cpu_cores": os.cpu_count(), "rows": rows}  # fmt: skip
        if args.json_file:
            with open(args.json_file, "w") as f:
                json.dump(out, f, indent=1)
        return

    rows = []
    for render, sizes in CONFIGS:
        path = prepare_shapes(args.data_dir, render, args.num_train)
        for workers in map(int, args.workers.split(",")):
            r = measure(path, sizes, workers, args.batch, args.batches)
            rows.append({"render": render, "pyramid": list(sizes), "workers": workers, **r})
    print(f"cpu cores: {os.cpu_count()}, batch {args.batch}, {args.batches} timed batches")
    print(f"{'render':>6} {'pyramid':>14} {'workers':>7} {'first batch s':>13} {'examples/s':>10}")
    for r in rows:
        pyr = "/".join(map(str, r["pyramid"]))
        print(
            f"{r['render']:>6} {pyr:>14} {r['workers']:>7} {r['first_batch_s']:>13.2f} "
            f"{r['examples_per_s']:>10.1f}"
        )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
