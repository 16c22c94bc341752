"""Synthetic data in the CUB-200 birds layout, for timing ``train.py`` on real files (no download).

Writes what :class:`attngan_jax.data.original.CUBSource` reads (docs/data.md)::

    OUT/CUB_200_2011/images/<NNN.Class>/<Class>_<i>.jpg   photo-sized JPEGs (300-500 px sides)
    OUT/CUB_200_2011/images.txt, bounding_boxes.txt       the bird's box in each image
    OUT/{train,test}/filenames.pickle, class_info.pickle  image keys, class ids (200 classes)
    OUT/captions.pickle                                   10 captions per image, a 5,450-word
                                                          vocabulary (the birds release's size)
    OUT/text/<key>.txt                                    the same captions as text

The images are smooth colour fields with a textured ellipse (the "bird") and mild noise, so a JPEG
is ~20-60 KB at quality 90, like CUB's photos (a noise image would be ~4x larger and slower to
decode than any photo). Optional:

* ``--data_dir=D``: prepare the dataset there (``tfds_builders.prepare``, what ``train.py`` does on
  its first run) with ``--image_format=jpeg`` (the loader decodes a JPEG per example, default) or
  ``png`` (``train.py``'s own default). ``train.py --config.data.data_dir=D`` then reuses it.
* ``--damsm_dir=W``: a model directory of random DAMSM encoders for this vocabulary (the birds
  widths: bi-LSTM 300/256, Inception-v3 image encoder), for ``--config.gan.damsm_checkpoint=W``
  (a GAN run needs pretrained encoders; their values do not change the step's cost).

Usage::

    python benchmarks/make_synthetic_birds.py --out=/tmp/birds_cub [--num_train=1000]
        [--num_test=64] [--data_dir=/tmp/birds_data --image_format=jpeg] [--damsm_dir=/tmp/dm]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import sys
import time

import numpy as np
from PIL import Image

VOCAB_SIZE = 5450  # the birds release's captions.pickle
CAPTIONS_PER_IMAGE = 10
NUM_CLASSES = 200
_WORDS = (
    "a this bird has wings that are brown and white with black yellow red blue grey small "
    "large beak short long pointed orange tail belly breast crown feathers head eyes throat "
    "green light dark striped spotted rectangular curved its the body nape an is medium sized"
).split()


def vocabulary() -> list[str]:
    """``ixtoword``: ``<end>``, birds-like words, then filler words up to :data:`VOCAB_SIZE`."""
    words = ["<end>", *dict.fromkeys(_WORDS)]
    return words + [f"w{i}" for i in range(VOCAB_SIZE - len(words))]


def caption(rng: np.random.Generator) -> list[int]:
    """8-24 word ids, mostly common words (as real captions), some rare ones."""
    n = int(rng.integers(8, 25))
    common = rng.integers(1, len(_WORDS) + 1, n)
    rare = rng.integers(len(_WORDS) + 1, VOCAB_SIZE, n)
    return np.where(rng.random(n) < 0.85, common, rare).astype(int).tolist()


def image(seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A (H, W, 3) uint8 image with sides in 300-500 and the bird's box ``(x, y, w, h)``."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(300, 501, 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    low = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)  # smooth background
    bg = np.asarray(Image.fromarray(low.astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
    bw, bh = int(rng.integers(w // 4, w // 2)), int(rng.integers(h // 4, h // 2))
    bx, by = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    cx, cy = bx + bw / 2, by + bh / 2
    inside = ((xx - cx) / (bw / 2)) ** 2 + ((yy - cy) / (bh / 2)) ** 2 <= 1.0
    stripes = 0.5 + 0.5 * np.sin(xx * rng.uniform(0.05, 0.3) + yy * rng.uniform(0.05, 0.3))
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    img = np.where(inside[..., None], colour * (0.6 + 0.4 * stripes[..., None]), bg)
    img = img + rng.normal(0, 6, img.shape).astype(np.float32)  # sensor-like noise
    return np.clip(img, 0, 255).astype(np.uint8), (bx, by, bw, bh)


def _write_image(job: tuple[str, int, int]) -> tuple[int, int, int, int, int]:
    path, seed, quality = job
    img, box = image(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(img).save(path, format="JPEG", quality=quality)
    return (*box, os.path.getsize(path))


def make_cub(out: str, num_train: int, num_test: int, seed: int = 0, quality: int = 90,
             workers: int = 0) -> dict:  # fmt: skip
    """Writes the CUB layout into ``out``; returns a summary (counts, bytes, seconds)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = num_train + num_test
    keys = []
    for i in range(n):
        c = i % NUM_CLASSES + 1
        keys.append(f"{c:03d}.Class_{c}/Class_{c}_{i:05d}")
    cub = os.path.join(out, "CUB_200_2011")
    jobs = [(os.path.join(cub, "images", k + ".jpg"), seed * 1_000_003 + i, quality)
            for i, k in enumerate(keys)]  # fmt: skip
    workers = workers or min(os.cpu_count() or 1, 16)
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            boxes = pool.map(_write_image, jobs, chunksize=16)
    else:
        boxes = [_write_image(j) for j in jobs]
    with open(os.path.join(cub, "images.txt"), "w") as f:
        f.writelines(f"{i + 1} {k}.jpg\n" for i, k in enumerate(keys))
    with open(os.path.join(cub, "bounding_boxes.txt"), "w") as f:
        f.writelines(
            f"{i + 1} {x}.0 {y}.0 {w}.0 {h}.0\n" for i, (x, y, w, h, _) in enumerate(boxes)
        )
    ixtoword = vocabulary()
    caps = [[caption(rng) for _ in range(CAPTIONS_PER_IMAGE)] for _ in keys]
    splits = {"train": range(num_train), "test": range(num_train, n)}
    for split, idx in splits.items():
        os.makedirs(os.path.join(out, split), exist_ok=True)
        with open(os.path.join(out, split, "filenames.pickle"), "wb") as f:
            pickle.dump([keys[i] for i in idx], f, protocol=2)
        with open(os.path.join(out, split, "class_info.pickle"), "wb") as f:
            pickle.dump([i % NUM_CLASSES + 1 for i in idx], f, protocol=2)
    flat = {s: [c for i in idx for c in caps[i]] for s, idx in splits.items()}
    wordtoix = {w: i for i, w in enumerate(ixtoword)}
    with open(os.path.join(out, "captions.pickle"), "wb") as f:
        pickle.dump([flat["train"], flat["test"], ixtoword, wordtoix], f, protocol=2)
    for k, cs in zip(keys, caps):
        path = os.path.join(out, "text", k + ".txt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.writelines(" ".join(ixtoword[t] for t in c) + "\n" for c in cs)
    sizes = [b[4] for b in boxes]
    return {
        "cub_dir": out,
        "num_train": num_train,
        "num_test": num_test,
        "vocab_size": len(ixtoword),
        "jpeg_bytes_mean": float(np.mean(sizes)),
        "jpeg_quality": quality,
        "make_cub_s": time.perf_counter() - t0,
    }


def prepare(cub_dir: str, data_dir: str, image_format: str) -> dict:
    """``tfds_builders.prepare("birds", ...)`` as ``train.py``'s first run does (its
    ``image_format`` aside); returns the dataset path and the seconds it took."""
    from attngan_jax.data import tfds_builders

    t0 = time.perf_counter()
    path = tfds_builders.prepare(
        "birds", data_dir, cub_dir, image_format=image_format, captions_per_image=10
    )
    return {"data_path": path, "image_format": image_format, "prepare_s": time.perf_counter() - t0}


def make_damsm_dir(directory: str, vocab_size: int = VOCAB_SIZE, variant: str = "full",
                   num_stages: int = 3) -> dict:  # fmt: skip
    """A model directory with random DAMSM encoders (``model/damsm``) for
    ``configs/attngan_birds.py[:tiny]`` with ``num_stages`` stages (the encoders' widths must be
    the GAN config's: ``--variant=tiny`` for a ``:tiny`` run)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax
    import train_step as ts

    from attngan_jax import model_dir
    from attngan_jax.configs import attngan_birds
    from attngan_jax.models.factory import ModelSpec

    t0 = time.perf_counter()
    config = attngan_birds.get_config(variant)
    config.model.num_stages = num_stages
    config.data.image_sizes = tuple(64 * 2**i for i in range(num_stages))
    spec = ModelSpec.from_config(config, vocab_size=vocab_size)
    with jax.default_device(jax.devices("cpu")[0]):
        enc = ts.encoders_for(spec, max(spec.image_sizes))  # numpy, no compile
    model_dir.save_damsm(directory, enc)
    return {"damsm_dir": directory, "damsm_s": time.perf_counter() - t0}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="the CUB-layout folder to write")
    ap.add_argument("--num_train", type=int, default=1000)
    ap.add_argument("--num_test", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--workers", type=int, default=0, help="processes (0: up to 16 cores)")
    ap.add_argument("--data_dir", default="", help="also prepare the dataset here")
    ap.add_argument("--image_format", default="jpeg", choices=["jpeg", "png"])
    ap.add_argument("--damsm_dir", default="", help="also write random DAMSM encoders here")
    ap.add_argument("--variant", default="full", choices=["full", "tiny"], help="their widths")
    ap.add_argument("--num_stages", type=int, default=3)
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    res = make_cub(a.out, a.num_train, a.num_test, a.seed, a.quality, a.workers)
    if a.data_dir:
        res.update(prepare(a.out, a.data_dir, a.image_format))
    if a.damsm_dir:
        res.update(make_damsm_dir(a.damsm_dir, res["vocab_size"], a.variant, a.num_stages))
    print(json.dumps(res, indent=1))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
