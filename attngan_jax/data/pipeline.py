"""The grain input pipeline: prepared ArrayRecord dataset -> host batches (numpy).

The training feed (``attngan_jax.train.feed``) turns them into global ``jax.Array``s
(``runtime.sharding.to_global``).

Per example it applies the randomness of the original ``TextDataset`` (reference §12.3-12.5): one of
the image's captions chosen uniformly, captions longer than ``words_num`` shortened to a random
in-order subset of ``words_num`` words, zero padding; the image resized so its shorter side is
``int(max_size * 76 / 64)`` (PIL bilinear), randomly cropped to ``max_size`` and flipped with p=0.5,
then the pyramid (PIL bilinear downscales of the crop, the largest size is the crop itself), each
scaled to [-1, 1] as ``Normalize(0.5, 0.5)(ToTensor(img))``, NHWC float32.

Randomness is a function of ``(seed, position in the sampled stream)`` only: grain's
``IndexSampler`` gives each position a Philox generator keyed ``seed + position``, and
:class:`_ExampleTransform` mixes ``seed`` in again so two seeds never share a stream shifted by one
position. The same ``(seed, shard_index, shard_count)`` therefore gives the same batches with any
``worker_count``, and ``iterator.get_state()`` / ``set_state()`` restore the exact position (grain
requires the restoring loader to have the same ``worker_count``, sampler and dataset/split).

Each batch is sorted by caption length, descending (the original's ``prepare_data``; stable, so
ties keep sampling order). The discriminator's mismatched pairs in the original are image b with
caption b + 1 (``real[:B-1]`` with ``sent[1:B]``), i.e. the shift by one inside that sorted batch.

Several hosts: the global batches do not depend on the number of processes. Every host runs the
same global sampler (same seed, all records) over the split's index (``index-<split>.npz``: every
record's captions, crop box and class, a few bytes per image, held in memory), draws the same
per-example randomness (caption, word dropping, crop offsets, flip; the crop offsets need only the
image size, which is the crop box's) for every example of the global batch, sorts the global batch,
and then reads and decodes only the records of its own block of ``global_batch_size //
shard_count`` rows (blocks in process order, as ``jax.make_array_from_process_local_data`` lays them
out). So N processes train on exactly the batches one process sees, and each reads 1/N of the
image bytes (:func:`image_read_stats` counts them). One process is the case ``shard_count=1``: its
block is the whole batch. The loader state (``get_state``) is the position in the global stream,
the same on every host; each host still saves and restores its own (``attngan_jax.train.checkpoint``).

Workers: ``worker_count=0`` runs everything in the calling thread. ``worker_count=n`` starts n grain
worker processes (decode + PIL transforms are CPU bound and hold the GIL) that each build whole
batches; on a 2-core machine one worker overlaps data preparation with the training step (the step
itself uses the cores through XLA), two workers only help when the step is not CPU bound. Workers
are started with the ``spawn`` method (about 1 s to the first batch on the 2-core machine).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np
import tensorflow_datasets as tfds
from absl import flags
from PIL import Image

from attngan_jax.data.image_files import decode_stored
from attngan_jax.data.text import sample_caption
from attngan_jax.data.tfds_builders import (
    INDEX_FILENAME,
    VOCAB_FILENAME,
    check_format,
    is_prepared,
)


def scale_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """The original's ``Scale(size)``: shorter side -> ``size`` (PIL bilinear), other truncated.

    Args:
        img: PIL RGB image (W, H).
        size: target length of the shorter side.

    Returns:
        The resized image (unchanged if the shorter side already equals ``size``).
    """
    ow, oh = _scaled_size(*img.size, size)
    if (ow, oh) == img.size:
        return img
    return img.resize((ow, oh), Image.BILINEAR)


def to_unit_range(img: Image.Image) -> np.ndarray:
    """``Normalize(0.5, 0.5)(ToTensor(img))`` in NHWC: (H, W, 3) float32 in [-1, 1]."""
    x = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    return (x - np.float32(0.5)) / np.float32(0.5)


def _scaled_size(w: int, h: int, size: int) -> tuple[int, int]:
    """The ``(width, height)`` :func:`scale_shorter_side` gives a ``w x h`` image."""
    if (w <= h and w == size) or (h <= w and h == size):
        return w, h
    if w < h:
        return size, int(size * h / w)
    return int(size * w / h), size


def crop_params(
    image_size: tuple[int, int],
    image_sizes: Sequence[int],
    rng: np.random.Generator | None,
    random_crop: bool = True,
    random_flip: bool = True,
) -> tuple[int, int, bool]:
    """The random decisions of :func:`image_pyramid`, from the image's size alone.

    Args:
        image_size: ``(width, height)`` of the decoded image (PIL's ``Image.size``, which PIL
            reads from the file header without decoding the pixels).
        image_sizes: pyramid sizes; the largest is the crop size.
        rng: generator for crop offsets and flip (unused when both are off).
        random_crop: see :func:`image_pyramid`.
        random_flip: see :func:`image_pyramid`.

    Returns:
        ``(top, left, flip)`` of the crop in the rescaled image.
    """
    max_size = max(image_sizes)
    w, h = _scaled_size(*image_size, int(max_size * 76 / 64) if random_crop else max_size)
    if random_crop:
        top = int(rng.integers(0, h - max_size + 1))
        left = int(rng.integers(0, w - max_size + 1))
    else:  # torchvision CenterCrop
        top = int(round((h - max_size) / 2.0))
        left = int(round((w - max_size) / 2.0))
    flip = bool(random_flip and rng.random() < 0.5)
    return top, left, flip


def apply_crop(
    image: np.ndarray | Image.Image,
    image_sizes: Sequence[int],
    top: int,
    left: int,
    flip: bool,
    random_crop: bool = True,
) -> dict[int, np.ndarray]:
    """Rescale, crop at ``(top, left)``, flip and build the pyramid (see :func:`image_pyramid`)."""
    max_size = max(image_sizes)
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    img = scale_shorter_side(img, int(max_size * 76 / 64) if random_crop else max_size)
    crop = img.crop((left, top, left + max_size, top + max_size))
    if flip:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    out = {}
    for size in image_sizes:
        scaled = crop if size == max_size else crop.resize((size, size), Image.BILINEAR)
        out[size] = to_unit_range(scaled)
    return out


def image_pyramid(
    image: np.ndarray | Image.Image,
    image_sizes: Sequence[int],
    rng: np.random.Generator | None,
    random_crop: bool = True,
    random_flip: bool = True,
) -> dict[int, np.ndarray]:
    """The original ``get_imgs`` transform (reference §12.5) on an already-cropped image.

    Args:
        image: (H, W, 3) uint8 RGB array or PIL RGB image.
        image_sizes: pyramid sizes, e.g. (64, 128, 256); the largest is the crop size.
        rng: generator for crop offsets and flip (unused when both are off).
        random_crop: the original's resize to 76/64 of the crop size and a random crop (uniform
            offsets, torchvision ``RandomCrop``). ``False``: the shorter side is resized to the crop
            size itself and the centre is cropped, so a square image is used whole (evaluation,
            and datasets whose captions name positions such as shapes).
        random_flip: horizontal flip with p = 0.5.

    Returns:
        ``{size: (size, size, 3) float32 in [-1, 1]}``.
    """
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    top, left, flip = crop_params(img.size, image_sizes, rng, random_crop, random_flip)
    return apply_crop(img, image_sizes, top, left, flip, random_crop)


class _RecordIndex(grain.sources.RandomAccessDataSource):
    """The records of a split without their images (``index-<split>.npz``; module docstring).

    Loaded once per process (grain workers load their own copy; pickling sends the path only).
    """

    def __init__(self, path: str, split: str, name: str):
        self._file = os.path.join(path, INDEX_FILENAME.format(split=split))
        self._name = name
        self._arrays: dict[str, np.ndarray] | None = None
        self._len = len(self._load()["num_caps"])

    def _load(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            with np.load(self._file) as f:
                a = {k: f[k] for k in f.files}
            # where record i's captions (in cap_lens) and words (in tokens) start
            a["cap_start"] = np.concatenate([[0], np.cumsum(a["num_caps"], dtype=np.int64)])
            a["tok_start"] = np.concatenate([[0], np.cumsum(a["cap_lens"], dtype=np.int64)])
            self._arrays = a
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __repr__(self) -> str:
        # grain compares repr(data_source) when restoring a state: name the dataset, not its path,
        # so a state stays valid when the prepared directory moves.
        return f"_IndexedSource({self._name}, num_records={len(self)})"

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, Any]:
        a, i = self._load(), int(index)
        c0, c1 = a["cap_start"][i], a["cap_start"][i + 1]
        t0, t1 = a["tok_start"][c0], a["tok_start"][c1]
        return dict(
            tokens=a["tokens"][t0:t1],
            cap_lens=a["cap_lens"][c0:c1],
            crop=a["crop"][i],
            class_id=a["class_id"][i],
            key=a["key"][i],
            index=i,
        )


_READ = {"records": 0, "image_bytes": 0}


def image_read_stats() -> dict[str, int]:
    """Records and image bytes this process's loaders have read so far (a copy).

    Grain worker processes count their own reads; with ``worker_count=0`` everything is here.
    """
    return dict(_READ)


class _ImageRecords:
    """Reads the images of given records (picklable for workers); counts what it reads."""

    def __init__(self, source: Any):
        self._source = source

    def read(self, indices: Sequence[int]) -> list[tuple[bytes, np.ndarray]]:
        """``[(image bytes, crop box)]`` of ``indices``."""
        indices = [int(i) for i in indices]
        many = getattr(self._source, "__getitems__", None)
        records = many(indices) if many is not None else [self._source[i] for i in indices]
        _READ["records"] += len(records)
        _READ["image_bytes"] += sum(len(r["image"]) for r in records)
        return [(r["image"], r["crop"]) for r in records]


class _ExampleTransform(grain.transforms.RandomMap):
    """Caption choice + word dropping + crop decision for one record (see the module docstring).

    The image is not read here: the crop decision (``crop_top``, ``crop_left``, ``crop_flip``)
    needs only the image size (the record's crop box); :class:`_HostBlock` reads and decodes the
    images of this host's rows.
    """

    def __init__(
        self,
        image_sizes: Sequence[int],
        words_num: int,
        seed: int,
        random_crop: bool,
        random_flip: bool,
    ):
        self.image_sizes = tuple(sorted(image_sizes))
        self.words_num = words_num
        self.seed = seed
        self.random_crop = random_crop
        self.random_flip = random_flip

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        # grain keys the generator with seed + position; mix the seed in again so that seeds s and
        # s + 1 do not produce the same streams shifted by one position.
        rng = np.random.default_rng([int(rng.integers(2**63)), self.seed])
        lens = np.asarray(element["cap_lens"], np.int64)  # (K,)
        ends = np.cumsum(lens)
        j = int(rng.integers(0, len(lens)))  # sent_ix = np.random.randint(0, K)
        caption, length = sample_caption(
            element["tokens"][ends[j] - lens[j] : ends[j]], self.words_num, rng
        )
        left, top, right, bottom = (int(v) for v in element["crop"])
        crop_top, crop_left, flip = crop_params(
            (right - left, bottom - top), self.image_sizes, rng, self.random_crop, self.random_flip
        )
        key = element["key"]
        return dict(
            captions=caption,
            cap_lens=np.int32(length),
            class_ids=np.int32(element["class_id"]),
            index=np.int32(element["index"]),
            keys=np.str_(key.decode("utf-8") if isinstance(key, bytes) else key),
            crop_top=np.int32(crop_top),
            crop_left=np.int32(crop_left),
            crop_flip=np.bool_(flip),
        )


class _SortByLength(grain.transforms.Map):
    """``prepare_data``: permute every field of a batch by caption length, descending."""

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        order = np.argsort(-batch["cap_lens"], kind="stable")  # (B,)
        return {k: v[order] for k, v in batch.items()}


class _HostBlock(grain.transforms.Map):
    """This host's rows of a global batch, with their images read and decoded.

    Args:
        images: the records' images (:class:`_ImageRecords`); only this block's are read.
        shard_index: this host's block, in process order.
        shard_count: number of blocks (hosts).
        image_sizes: pyramid sizes.
        random_crop: the resize rule of :func:`image_pyramid`.
        cache: keep each record's pyramid in memory after its first read (only for loaders
            without random crops or flips, where a record's pyramid never changes).
    """

    def __init__(self, images, shard_index, shard_count, image_sizes, random_crop, cache=False):
        self.images = images
        self.shard_index = shard_index
        self.shard_count = shard_count
        self.image_sizes = tuple(sorted(image_sizes))
        self.random_crop = random_crop
        self.cache: dict[int, dict[int, np.ndarray]] | None = {} if cache else None

    def __getstate__(self) -> dict[str, Any]:  # a worker process fills its own cache
        return {**self.__dict__, "cache": None if self.cache is None else {}}

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = batch["index"].shape[0] // self.shard_count
        rows = slice(self.shard_index * b, (self.shard_index + 1) * b)
        block = {k: v[rows] for k, v in batch.items()}  # (b, ...)
        crops = zip(block.pop("crop_top"), block.pop("crop_left"), block.pop("crop_flip"))
        cache = {} if self.cache is None else self.cache
        todo = [(int(i), c) for i, c in zip(block["index"], crops) if int(i) not in cache]
        for (data, box), (i, (top, left, flip)) in zip(
            self.images.read([i for i, _ in todo]) if todo else [], todo
        ):
            image = decode_stored(data, box)
            cache[i] = apply_crop(
                image, self.image_sizes, int(top), int(left), bool(flip), self.random_crop
            )
        pyramids = [cache[int(i)] for i in block["index"]]
        for s in self.image_sizes:
            block[f"image_{s}"] = np.stack([p[s] for p in pyramids])  # (b, s, s, 3)
        return block


def dataset_metadata(path: str) -> dict[str, Any]:
    """A prepared dataset's ``metadata.json``: ``dataset``, ``n_words``, ``positional_captions``."""
    with open(os.path.join(path, "metadata.json")) as f:
        return json.load(f)


def num_records(path: str, split: str) -> int:
    """Number of records of ``split`` in a prepared dataset (from its TFDS dataset info)."""
    return int(tfds.builder_from_directory(path).info.splits[split].num_examples)


def split_captions(path: str, split: str) -> dict[str, np.ndarray]:
    """Every record's captions and class of a split, without images (``index-<split>.npz``).

    Returns:
        ``tokens`` (all word ids, concatenated), ``cap_lens`` (C,) words per caption,
        ``num_caps`` (R,) captions per record, ``class_id`` (R,), and the offsets ``cap_start``
        (R + 1,) (record ``r``'s captions are ``cap_start[r]:cap_start[r+1]``) and ``tok_start``
        (C + 1,) (caption ``c``'s words are ``tokens[tok_start[c]:tok_start[c+1]]``).
    """
    a = _RecordIndex(path, split, split)._load()
    keys = ("tokens", "cap_lens", "num_caps", "class_id", "cap_start", "tok_start")
    return {k: np.asarray(a[k]) for k in keys}


def vocabulary_path(path: str) -> str:
    """The vocabulary JSON saved beside the records (load with ``Vocabulary.load``)."""
    return os.path.join(path, VOCAB_FILENAME)


def make_loader(
    data_dir_or_path: str,
    split: str,
    *,
    global_batch_size: int,
    image_sizes: Sequence[int] = (64, 128, 256),
    words_num: int = 18,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    random_crop: bool | None = None,
    random_flip: bool | None = None,
    sort_by_length: bool = True,
    worker_count: int = 0,
    worker_buffer_size: int = 1,
    read_threads: int = 16,
    drop_remainder: bool = True,
    shard_index: int | None = None,
    shard_count: int | None = None,
    dataset: str | None = None,
    cache_images: bool = False,
) -> grain.DataLoader:
    """A grain ``DataLoader`` of this host's batches; ``iter(loader)`` supports get/set_state.

    Args:
        data_dir_or_path: a prepared dataset directory (what ``prepare`` returns), or the
            ``data_dir`` given to ``prepare`` together with ``dataset``.
        split: e.g. ``'train'``.
        global_batch_size: batch size over all hosts; each host yields
            ``global_batch_size // shard_count`` examples per batch.
        image_sizes: pyramid sizes; the largest is the crop size.
        words_num: fixed caption length (``TEXT.WORDS_NUM``).
        seed: seeds the shuffle and all per-example randomness.
        shuffle: shuffle the records (per epoch).
        num_epochs: ``None`` repeats forever.
        random_crop: random (else centre) crop. ``None``: on, except for datasets whose captions
            name positions (``metadata.json`` ``positional_captions``, e.g. shapes).
        random_flip: p=0.5 horizontal flip; ``None`` as ``random_crop``.
        sort_by_length: sort each host batch by caption length, descending.
        worker_count: grain worker processes (0: in the calling thread).
        worker_buffer_size: batches each worker prepares ahead.
        read_threads: grain threads reading index entries ahead (0: in the calling thread); each
            keeps 4 in flight. The index is in memory, so they save little; the images are read
            (``__getitems__``, several at once) by the step that decodes this host's rows.
        drop_remainder: drop the last incomplete batch (must be True with several shards).
        shard_index: this host's block of each global batch; default ``jax.process_index()``.
        shard_count: number of blocks; default ``jax.process_count()``.
        dataset: dataset name when ``data_dir_or_path`` is a ``data_dir``.
        cache_images: keep every record's decoded image pyramid in memory after its first read
            (float32: ``4 * 3 * sum(s**2)`` bytes per record and host, 61 MB for the shapes demo's
            4,000 records at 16 and 32 px). For the shapes demo's GAN batches of 16 the loader
            takes 5.9 instead of 15.7 ms after the first epoch (benchmarks/pipeline_overhead.py).
            Only without random crops and flips (a record's pyramid must not change).

    Raises:
        ValueError: ``cache_images`` with random crops or flips.

    Returns:
        A ``grain.DataLoader`` yielding dicts: ``image_{size}`` (B, size, size, 3) float32 in
        [-1, 1] for each size, ``captions`` (B, words_num) int32 zero-padded, ``cap_lens`` (B,)
        int32, ``class_ids`` (B,) int32, ``index`` (B,) int32 record index in the split and
        ``keys`` (B,) numpy str (host only); B = global_batch_size // shard_count.
    """
    path = _prepared_path(data_dir_or_path, dataset)
    random_crop, random_flip = _augmentation(path, random_crop, random_flip)
    if cache_images and (random_crop or random_flip):
        raise ValueError(
            "cache_images keeps one decoded pyramid per record, so it needs random_crop=False and "
            "random_flip=False (--config.data.random_crop/random_flip); or turn cache_images off"
        )
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
    _check_blocks(global_batch_size, shard_count, drop_remainder)
    source = _RecordIndex(path, split, f"{dataset_metadata(path).get('dataset')}/{split}")
    images = _ImageRecords(tfds.builder_from_directory(path).as_data_source(split))
    # One global stream on every host (module docstring): the sampler is not sharded.
    shard_options = grain.sharding.ShardOptions(
        shard_index=0, shard_count=1, drop_remainder=drop_remainder
    )
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=shard_options,
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=seed,
    )
    operations: list[Any] = [
        _ExampleTransform(image_sizes, words_num, seed, random_crop, random_flip),
        grain.transforms.Batch(batch_size=global_batch_size, drop_remainder=drop_remainder),
        *([_SortByLength()] if sort_by_length else []),
        _HostBlock(images, shard_index, shard_count, image_sizes, random_crop, cache_images),
    ]
    if worker_count > 0 and not flags.FLAGS.is_parsed():
        # grain's worker processes read its absl flags; outside an absl app nobody parsed them, so
        # accept their defaults (an absl app that parses later still parses normally).
        flags.FLAGS.mark_as_parsed()
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=operations,
        worker_count=worker_count,
        worker_buffer_size=worker_buffer_size,
        shard_options=shard_options,
        read_options=grain.ReadOptions(
            num_threads=read_threads, prefetch_buffer_size=4 * read_threads
        ),
    )


def _prepared_path(data_dir_or_path: str, dataset: str | None) -> str:
    """The prepared dataset directory (of ``dataset`` under a ``data_dir``), checked complete."""
    path = data_dir_or_path
    if dataset is not None:
        from attngan_jax.data.tfds_builders import dataset_dir

        path = dataset_dir(data_dir_or_path, dataset)
    if not is_prepared(path):
        raise FileNotFoundError(
            f"{path} is not a completely prepared dataset (no dataset_info.json or "
            f"{VOCAB_FILENAME}); run python -m attngan_jax.data.prepare"
        )
    check_format(path)
    return path


def _augmentation(path: str, random_crop: bool | None, random_flip: bool | None):
    """``(random_crop, random_flip)``: ``None`` is on unless the captions name positions."""
    positional = bool(dataset_metadata(path).get("positional_captions", False))
    for name, value in (("random_crop", random_crop), ("random_flip", random_flip)):
        if value and positional:
            warnings.warn(
                f"{name}=True on a dataset whose captions name positions ({path}); "
                "crops and flips contradict its captions",
                stacklevel=3,
            )
    random_crop = (not positional) if random_crop is None else random_crop
    random_flip = (not positional) if random_flip is None else random_flip
    return random_crop, random_flip


def _check_blocks(global_batch_size: int, shard_count: int, drop_remainder: bool) -> None:
    """Every host's block of a global batch has the same size."""
    if global_batch_size % shard_count:
        lo = global_batch_size // shard_count * shard_count
        raise ValueError(
            f"global batch size {global_batch_size} does not split over {shard_count} processes; "
            f"use a multiple of {shard_count} (nearest: {lo or shard_count} or {lo + shard_count})"
        )
    if shard_count > 1 and not drop_remainder:
        raise ValueError(
            "several hosts need equal blocks: drop_remainder=False needs shard_count=1"
        )
