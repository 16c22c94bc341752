"""Captions -> images with attention maps: the one sampler, the one noise convention.

Python API for notebooks::

    from attngan_jax.eval import sampling
    out = sampling.generate("runs/shapes/attngan", ["a red circle on the left"], num_samples=2)
    out["images"][-1].shape   # (1, 2, S, S, 3) final stage, in [-1, 1] (S = 32 for the shapes demo)

``generate`` loads a *model directory* (``attngan_jax.model_dir``: written at the end of training or by
the converter of the original release), tokenises like the original (unknown words are reported by
name and dropped; a caption with no known word is an error), encodes the captions with the frozen
DAMSM text encoder, and runs the generator in eval mode (BatchNorm running statistics).

Everything that draws images from captions (``generate``, ``eval.py --mode=sample``, the metrics,
the local page, the training run's sample grids) uses :func:`sampler` and :func:`sample_noise`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax import model_dir
from attngan_jax.data.text import DataError, tokenize
from attngan_jax.data.vocab import Vocabulary
from attngan_jax.models import factory
from attngan_jax.models.factory import ModelSpec

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoadedModel:
    """A model directory in memory."""

    spec: ModelSpec
    vocab: Vocabulary
    generator: Any  # {"params", "batch_stats"}
    encoders: Any  # {"text": {"params"}, "image": {"params", "batch_stats"}}


def _stamp(directory: str) -> tuple:
    """What identifies a model directory's contents: every file's path, size and mtime."""
    out = []
    for root, _, files in os.walk(directory):
        for f in sorted(files):
            st = os.stat(os.path.join(root, f))
            out.append(
                (os.path.relpath(os.path.join(root, f), directory), st.st_size, st.st_mtime_ns)
            )
    return tuple(sorted(out))


def load_model(directory: str | None = None, raw: bool = False) -> LoadedModel:
    """Loads ``model.json``, ``vocab.json``, the generator (EMA, or ``raw``) and the encoders.

    Loaded models are cached by directory *and contents*: a directory exported again (a newer
    checkpoint, ``best/`` replaced) is read again, an unchanged one is not.

    Args:
        directory: a model directory (a run's workdir resolves to its exported model); None: the
            shipped shapes model (:data:`~attngan_jax.model_dir.SHIPPED_MODEL`).
        raw: the raw generator instead of the EMA one.

    Raises:
        InputError: ``model.json`` is missing, not JSON or lacks a key (named in the message).
    """
    directory = os.path.abspath(directory or model_dir.SHIPPED_MODEL)
    return _load_model(directory, raw, _stamp(directory))


@functools.lru_cache(maxsize=4)
def _load_model(directory: str, raw: bool, stamp: tuple) -> LoadedModel:
    del stamp  # part of the cache key only
    spec = model_dir.load_spec(directory)
    vocab = Vocabulary.load(os.path.join(directory, "vocab.json"))
    gen = jax.tree_util.tree_map(jnp.asarray, model_dir.load_generator(directory, raw=raw))
    enc = jax.tree_util.tree_map(jnp.asarray, model_dir.load_damsm(directory))
    return LoadedModel(spec, vocab, gen, enc)


def local_model(spec: ModelSpec, vocab: Vocabulary, generator: Any, encoders: Any) -> LoadedModel:
    """A :class:`LoadedModel` of networks held by a training state, on this process's devices.

    The state's arrays are replicated over every device of every process; sampling runs on the
    local devices (:func:`place_batch`), so the host copy of each array is placed once, replicated
    over them.

    Args:
        spec: the networks.
        vocab: the vocabulary.
        generator: ``{"params": EMA (or raw) parameters, "batch_stats"}``.
        encoders: the frozen DAMSM encoders ``{"text": ..., "image": ...}``.
    """
    from attngan_jax.runtime import sharding

    local = sharding.replicated(sharding.make_mesh(jax.local_devices()))
    generator, encoders = jax.device_put(sharding.fetch((generator, encoders)), local)
    return LoadedModel(spec, vocab, generator, encoders)


def encode_captions(
    vocab: Vocabulary, captions: Sequence[str], words_num: int
) -> tuple[np.ndarray, np.ndarray, list[list[str]], list[list[str]]]:
    """Tokenises captions like the original ``gen_example``.

    Args:
        vocab: the model's vocabulary.
        captions: caption strings.
        words_num: minimum padded length (longer captions are kept whole, as the original).

    Returns:
        ``(ids (N, T) int32, lens (N,) int32, words per caption, unknown words per caption)``.

    Raises:
        DataError: there is no caption, a caption is empty (no word tokens) or has no word of the
            vocabulary (the message names it); other unknown words are dropped with a warning.
    """
    if not captions:
        raise DataError("no captions given: pass --caption=TEXT or --captions=FILE")
    toks, unknown = [], []
    for i, c in enumerate(captions):
        t = tokenize(c)
        if not t:
            raise DataError(
                f"caption {i} ({c!r}) is empty: it has no words (punctuation and non-ASCII "
                "characters are dropped); give a sentence such as 'a red bird'"
            )
        known = [w for w in t if w in vocab.wordtoix]
        unknown.append([w for w in t if w not in vocab.wordtoix])
        if not known:
            shown = ", ".join(unknown[-1][:10]) + (" ..." if len(unknown[-1]) > 10 else "")
            raise DataError(
                f"caption {i} ({c!r}): none of its words is in the model's vocabulary "
                f"({len(vocab)} words; unknown: {shown}); use words of the training captions"
            )
        toks.append(known)
    t_max = max(words_num, max(len(t) for t in toks))
    ids = np.zeros((len(toks), t_max), np.int32)
    for i, t in enumerate(toks):
        ids[i, : len(t)] = [vocab.wordtoix[w] for w in t]
    lens = np.array([len(t) for t in toks], np.int32)
    for c, u in zip(captions, unknown):
        if u:
            log.warning("caption %r: words not in the vocabulary were dropped: %s", c, u)
    return ids, lens, toks, unknown


@functools.lru_cache(maxsize=8)
def sampler(spec: ModelSpec) -> Callable:
    """The one jitted sampler of a spec, built once and reused (compiled once per batch shape).

    ``fn(g_vars, text_vars, ids (B, T), lens (B,), z (B, z_dim), eps (B, condition_dim))`` ->
    ``(images per stage (B, S, S, 3) in [-1, 1], attention per attending stage (B, T, s, s))``:
    the frozen text encoder, then the generator in eval mode (BatchNorm running statistics).
    """
    gen = factory.generator(spec)
    text = factory.text_encoder(spec)

    @jax.jit
    def fn(g_vars, text_vars, ids, lens, z, eps):
        words, sent = text.apply(text_vars, ids, lens, train=False)
        out = gen.apply(g_vars, z, sent, words, ids == 0, train=False, eps=eps)
        return out.fake_imgs, out.att_maps

    return fn


def generate(
    model: str | LoadedModel | None,
    captions: Sequence[str],
    num_samples: int = 1,
    seed: int = 0,
    truncation: float | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Generates ``num_samples`` images per caption.

    Sample ``j`` of caption ``i`` gets the noise of item ``i * num_samples + j``
    (:func:`sample_noise`), as ``eval.py --mode=sample`` and the local page: the same caption and
    seed give the same images through all three, whatever the batch size or device count.

    Args:
        model: a model directory, a :class:`LoadedModel`, or None for the shipped shapes model.
        captions: caption strings.
        num_samples: images per caption (different z and CA noise).
        seed: seeds z and the CA noise.
        truncation: if set, z is drawn from a normal truncated to ``[-truncation, truncation]``.
        batch_size: generator batch size.

    Returns:
        ``images``: per stage (N, num_samples, S, S, 3) float32 in [-1, 1]; ``attention``: per
        attending stage (N, num_samples, T, s, s); ``words``: per caption the words used;
        ``unknown``: per caption the dropped words.
    """
    m = model if isinstance(model, LoadedModel) else load_model(model)
    ids, lens, words, unknown = encode_captions(m.vocab, captions, m.spec.words_num)
    n = len(captions)
    imgs, atts = [], []
    for _, fi, am in generate_items(m, ids, lens, num_samples, seed, truncation, batch_size):
        imgs.append(fi)
        atts.append(am)
    images = [np.concatenate([b[i] for b in imgs]) for i in range(len(imgs[0]))]
    attention = [np.concatenate([b[i] for b in atts]) for i in range(len(atts[0]))]
    shape = (n, num_samples)
    return {
        "images": [x.reshape(shape + x.shape[1:]) for x in images],
        "attention": [x.reshape(shape + x.shape[1:]) for x in attention],
        "words": words,
        "unknown": unknown,
    }


def generate_items(
    m: LoadedModel,
    ids: np.ndarray,
    lens: np.ndarray,
    num_samples: int,
    seed: int,
    truncation: float | None = None,
    batch_size: int = 16,
):
    """Yields the images of every (caption, sample) item, ``batch_size`` items at a time.

    Item ``i * num_samples + j`` is sample ``j`` of caption ``i``, with the noise of that item
    (:func:`sample_noise`): the convention of :func:`generate`, ``eval.py --mode=sample`` and the
    local page.

    Args:
        m: the loaded model.
        ids, lens: the encoded captions (:func:`encode_captions`), (N, T) and (N,).
        num_samples: images per caption.
        seed, truncation: of :func:`sample_noise`.
        batch_size: items per generator call.

    Yields:
        ``(items (b,), images per stage (b, S, S, 3), attention per attending stage (b, T, s, s))``.
    """
    total = len(ids) * num_samples
    item_caption = np.repeat(np.arange(len(ids)), num_samples)  # (total,)
    for s in range(0, total, batch_size):
        items = np.arange(s, min(s + batch_size, total))
        z, eps = sample_noise(seed, items, m.spec.z_dim, m.spec.condition_dim, truncation)
        caps = item_caption[items]
        imgs, atts = generate_batch(m, ids[caps], lens[caps], z, eps)
        yield items, imgs, atts


def sample_noise(
    seed: int,
    indices: np.ndarray,
    z_dim: int,
    condition_dim: int,
    truncation: float | None = None,
    truncation_bound: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Noise z and the CA noise of items ``indices``, each drawn from ``fold_in(key(seed), index)``.

    The noise of an item depends only on ``(seed, index)``, not on the batch it falls in, the
    batch size or the number of devices, so outputs are reproducible however they are chunked.

    Args:
        seed: base seed.
        indices: (N,) int item indices (e.g. ``caption_index * num_samples + sample``).
        z_dim: noise size.
        condition_dim: CA noise size.
        truncation: if set, z ~ normal truncated to ``[-truncation, truncation]``; with
            ``truncation_bound``, z = ``truncation`` x a normal truncated to ``[-bound, bound]``
            (DF-GAN's ``truncated_noise``: ``trunc_rate * truncnorm(-2, 2)``).
        truncation_bound: see ``truncation``.

    Returns:
        ``(z (N, z_dim), eps (N, condition_dim))`` float32.
    """
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.asarray(indices))

    def one(k):
        k_z, k_e = jax.random.split(k)
        if truncation and truncation_bound:
            b = truncation_bound
            z = truncation * jax.random.truncated_normal(k_z, -b, b, (z_dim,))
        elif truncation:
            z = jax.random.truncated_normal(k_z, -truncation, truncation, (z_dim,))
        else:
            z = jax.random.normal(k_z, (z_dim,))
        return z, jax.random.normal(k_e, (condition_dim,))

    return jax.vmap(one)(keys)


def place_batch(arrays: Sequence[Any]) -> tuple[list[Any], int]:
    """Puts a batch on this process's devices: data-sharded over them if there are several.

    With one device the arrays are returned as they are (``jit`` places them). With several, the
    batch axis is padded (repeating the last row) to a multiple of the device count and split over
    a ``data`` mesh, so ``jit`` runs data parallel. Only local devices: sampling and evaluation
    run within one process (in a multi-process job, on the primary alone).

    Args:
        arrays: host arrays sharing their first (batch) axis of size B.

    Returns:
        ``(placed arrays, B)``; outputs of a jitted function must be cut back to ``[:B]``.
    """
    n = len(arrays[0])
    ndev = jax.local_device_count()
    if ndev == 1:
        return list(arrays), n
    from attngan_jax.runtime import sharding

    pad = -n % ndev
    out = []
    sh = sharding.batch_sharded(sharding.make_mesh(jax.local_devices()))
    for a in arrays:
        a = np.asarray(a)
        if pad:
            a = np.concatenate([a, np.repeat(a[-1:], pad, axis=0)])  # (B + pad, ...)
        out.append(jax.device_put(a, sh))
    return out, n


def generate_batch(
    m: LoadedModel, ids: np.ndarray, lens: np.ndarray, z: Any, eps: Any
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One jitted generator call (eval mode) on encoded captions.

    Args:
        m: the loaded model.
        ids: (B, T) int32 word ids, zero-padded.
        lens: (B,) int32 caption lengths.
        z: (B, z_dim) noise.
        eps: (B, condition_dim) CA noise.

    Returns:
        ``(images per stage (B, S, S, 3) in [-1, 1], attention per attending stage (B, T, s, s))``
        as numpy.
    """
    fn = sampler(m.spec)
    (ids, lens, z, eps), n = place_batch([ids, lens, np.asarray(z), np.asarray(eps)])
    imgs, atts = fn(m.generator, m.encoders["text"], ids, lens, z, eps)
    return [np.asarray(x)[:n] for x in imgs], [np.asarray(a)[:n] for a in atts]


# ----------------------------------------------------------------------------- during training
def _decode(vocab: Vocabulary, ids: np.ndarray, n: int) -> list[str]:
    return [vocab.ixtoword[int(i)] for i in ids[:n]]


def render_super_image(
    spec: ModelSpec,
    state,
    data_path: str,
    vocab: Vocabulary,
    mesh,
    sort_by_length: bool,
    num: int = 8,
) -> np.ndarray:
    """A super-image (stages + top attended words) of ``num`` test captions with the EMA generator.

    The noise of caption ``i`` is :func:`sample_noise` of item ``i`` with seed 0. Every process
    computes the same grid (inputs replicated over ``mesh``, beside the replicated generator).

    Args:
        spec: the networks.
        state: the GAN training state (``ema_params``, ``g_stats``, ``encoders``).
        data_path: the prepared dataset (its first ``num`` test records are drawn).
        vocab: the vocabulary (to print the words).
        mesh: the training mesh.
        sort_by_length: as the training loader (the order of the grid's rows).
        num: captions in the grid.
    """
    from attngan_jax.data import pipeline  # grain/TFDS only where a dataset is read
    from attngan_jax.runtime import sharding
    from attngan_jax.visualize import super_image

    loader = pipeline.make_loader(
        data_path,
        "test",
        global_batch_size=num,
        image_sizes=tuple(spec.image_sizes),
        words_num=spec.words_num,
        seed=0,
        shuffle=False,
        num_epochs=1,
        random_crop=False,
        random_flip=False,
        sort_by_length=sort_by_length,
        shard_index=0,
        shard_count=1,  # every process reads the same ``num`` captions
    )
    batch = next(iter(loader))
    z, eps = sample_noise(0, np.arange(num), spec.z_dim, spec.condition_dim)
    g_vars = {"params": state.ema_params, "batch_stats": state.g_stats}
    # (num, ...) host arrays -> replicated over the mesh, beside the replicated generator
    ids, lens, z, eps = jax.device_put(
        (batch["captions"], batch["cap_lens"], np.asarray(z), np.asarray(eps)),
        sharding.replicated(mesh),
    )
    fn = sampler(spec)
    imgs, atts = sharding.fetch(
        sharding.call_in_lockstep(fn, g_vars, state.encoders["text"], ids, lens, z, eps)
    )
    words = [_decode(vocab, batch["captions"][i], int(batch["cap_lens"][i])) for i in range(num)]
    return super_image(list(imgs), list(atts), words)
