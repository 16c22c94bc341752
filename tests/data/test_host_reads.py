"""Each host reads the image bytes of its own block only: 1/N of the global batch's, N = 1, 2, 4.

The loader's own count (``pipeline.image_read_stats``) and the kernel's (``rchar`` of
``/proc/self/io``: every byte this process read through a system call) per step, on a COCO folder
of photograph JPEGs; the N hosts' blocks together are the one-process batch.
"""

import os
import sys

import numpy as np
import pytest
from paths import REPO

from attngan_jax.data import pipeline, tfds_builders

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import photos  # noqa: E402

BATCH, STEPS = 8, 3


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("coco"))
    photos.make_coco_folder(root, 40, val_fraction=0.2, release=True)
    return tfds_builders.prepare("coco", os.path.join(root, "tfds"), root, workers=0)


def _rchar() -> int | None:
    try:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("rchar"))
    except OSError:
        return None


def _host_steps(path: str, index: int, count: int) -> list[dict]:
    """``STEPS`` batches (after the first) of host ``index`` of ``count``, with what reading cost."""
    it = iter(
        pipeline.make_loader(
            path, "train", global_batch_size=BATCH, image_sizes=(32, 64), words_num=8, seed=5,
            shard_index=index, shard_count=count, read_threads=0,
        )
    )  # fmt: skip
    out = [next(it)]  # the first opens the record files (their index: not image bytes)
    for _ in range(STEPS):
        before, io0 = pipeline.image_read_stats(), _rchar()
        batch = next(it)
        after, io1 = pipeline.image_read_stats(), _rchar()
        batch["records_read"] = after["records"] - before["records"]
        batch["bytes_read"] = after["image_bytes"] - before["image_bytes"]
        batch["io_read"] = None if io0 is None else io1 - io0
        out.append(batch)
    return out[1:]


def test_each_host_reads_only_its_block(coco):
    with np.load(os.path.join(coco, "index-train.npz")) as f:
        image_bytes = f["image_bytes"]  # (N,) stored image bytes per record
    one = _host_steps(coco, 0, 1)
    for count in (1, 2, 4):
        hosts = [_host_steps(coco, i, count) for i in range(count)]
        for step in range(STEPS):
            total = 0
            for h in hosts:
                got = h[step]
                own = int(image_bytes[got["index"]].sum())  # the images of its own rows
                assert got["records_read"] == BATCH // count
                assert got["bytes_read"] == own
                if got["io_read"] is not None:  # what the kernel gave: no more than that
                    assert own <= got["io_read"] <= 1.02 * own + 16384, (count, got["io_read"])
                total += got["bytes_read"]
            # together: the one-process batch, read once
            assert total == one[step]["bytes_read"]
            for k in ("index", "captions", "cap_lens", "image_64"):
                np.testing.assert_array_equal(
                    np.concatenate([h[step][k] for h in hosts]), one[step][k]
                )
