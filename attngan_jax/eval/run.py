"""What ``eval.py`` runs: captions -> PNG files (``sample``), and metrics of model directories.

``sample`` writes, for caption ``i`` (0-based, counting the non-empty lines of the caption file)
and sample ``j``::

    OUT/{i:04d}_{j:02d}_{size}.png       every stage's image (e.g. 0003_01_64.png, 0003_01_128.png)
    OUT/{i:04d}_{j:02d}_attention.png    the super-image: stages + the top attended words' maps

The noise of ``(i, j)`` is drawn from ``fold_in(key(seed), i * num_samples + j)``
(:func:`attngan_jax.eval.sampling.sample_noise`), so a caption's images do not depend on the batch size,
the device count or the other captions in the file.

``evaluate`` (metrics) lives in :mod:`attngan_jax.eval.evaluators`; :func:`evaluate_all` scores every
model directory below a folder that has no metrics JSON yet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from attngan_jax import model_dir
from attngan_jax.data.text import DataError
from attngan_jax.errors import InputError, MissingInputError
from attngan_jax.eval import sampling
from attngan_jax.eval.evaluators import evaluate, metrics_path
from attngan_jax.runtime.observe import progress
from attngan_jax.visualize import save_png, super_image, to_uint8

log = logging.getLogger(__name__)


def read_captions(path: str) -> list[str]:
    """The non-empty lines of a caption file, stripped (caption ``i`` = the i-th of them).

    UTF-8 with or without a byte-order mark; Windows (CRLF) line ends are fine.

    Raises:
        DataError: the file is missing, not UTF-8, or holds no caption.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = [line.strip() for line in f]
    except FileNotFoundError:
        raise MissingInputError(f"--captions={path}: no such file (one caption per line)") from None
    except UnicodeDecodeError as e:
        raise DataError(f"--captions={path}: not UTF-8 text ({e}); save it as UTF-8") from None
    except IsADirectoryError:
        raise DataError(f"--captions={path}: a folder, not a caption file") from None
    caps = [line for line in lines if line]
    if not caps:
        raise DataError(f"--captions={path}: no captions (every line is empty)")
    return caps


def sample(
    workdir: str,
    captions: Sequence[str],
    outdir: str,
    num_samples: int = 1,
    seed: int = 0,
    generator: str = "ema",
    truncation: float | None = None,
    batch_size: int = 16,
    top_k: int = 5,
) -> list[str]:
    """Generates ``num_samples`` images per caption and writes them as PNG files.

    Args:
        workdir: a model directory (or a demo workdir whose ``attngan/`` is one).
        captions: caption strings; caption ``i`` writes ``{i:04d}_*``.
        outdir: output folder (created).
        num_samples: images per caption.
        seed: noise seed.
        generator: ``"ema"`` (the exported/released weights) or ``"raw"`` (non-EMA, training only).
        truncation: truncate z to ``[-t, t]`` (None: plain normal).
        batch_size: generator batch size (images per jitted call).
        top_k: words shown per attending stage in the attention image.

    Returns:
        The written paths, in order.

    Raises:
        DataError: a caption has no word of the vocabulary (named in the message); unknown words
            of other captions are logged as warnings, by name, and dropped.
    """
    if generator not in ("ema", "raw"):
        raise InputError(f"--generator={generator}: use ema or raw")
    if num_samples < 1:
        raise InputError(f"--num_samples={num_samples}: must be >= 1")
    if batch_size < 1:
        raise InputError(f"--batch_size={batch_size}: must be >= 1")
    mdir = model_dir.resolve(workdir)
    m = sampling.load_model(mdir, raw=generator == "raw")
    # Encode everything first: a caption without any known word fails before any image is made.
    ids, lens, words, _ = sampling.encode_captions(m.vocab, captions, m.spec.words_num)
    written: list[str] = []
    bar = progress(len(captions) * num_samples, desc="sample")
    bar.unit = "image"
    batches = sampling.generate_items(m, ids, lens, num_samples, seed, truncation, batch_size)
    for items, imgs, atts in batches:
        for b, item in enumerate(items):
            i, j = divmod(int(item), num_samples)
            stem = os.path.join(outdir, f"{i:04d}_{j:02d}")
            for x in imgs:
                path = f"{stem}_{x.shape[1]}.png"
                save_png(path, to_uint8(x[b]))
                written.append(path)
            sup = super_image(
                [x[b : b + 1] for x in imgs], [a[b : b + 1] for a in atts], [words[i]], top_k=top_k
            )
            save_png(f"{stem}_attention.png", sup)
            written.append(f"{stem}_attention.png")
        bar.update(len(items))
    bar.close()
    return written


def evaluate_all(root: str, generator: str = "ema", **kwargs) -> dict[str, dict | None]:
    """Scores each model directory directly below ``root`` that has no metrics JSON yet.

    Args:
        root: a folder of model directories (or of demo workdirs).
        generator: ``"ema"`` or ``"raw"``.
        **kwargs: :func:`attngan_jax.eval.evaluators.evaluate` options.

    Returns:
        ``{subdir: metrics dict, or None when skipped (already scored)}``.
    """
    if not os.path.isdir(root):
        raise MissingInputError(f"--workdir={root}: no such folder")
    results: dict[str, dict | None] = {}
    subdirs = [os.path.join(root, d) for d in sorted(os.listdir(root))]
    found = [d for d in subdirs if os.path.isdir(d) and model_dir.is_model_dir(d)]
    if not found:
        raise MissingInputError(
            f"--workdir={root}: no model directory below it (with --all, give the folder that "
            "holds the model directories)"
        )
    for d in found:
        md = model_dir.resolve(d)
        if os.path.exists(metrics_path(md, generator)):
            print(f"{d}: already scored ({metrics_path(md, generator)}), skipped")
            results[d] = None
            continue
        results[d] = evaluate(md, generator=generator, **kwargs)
    return results


def format_metrics(out: dict) -> str:
    """One readable line of a metrics dict (values, then the skipped metrics with their reasons)."""

    def nested(d: dict) -> str:  # per-stage figures: {16: {...}, 32: {...}}
        items = []
        for a, b in sorted(d.items()):
            if isinstance(b, dict):
                items.append(f"{a}: {{{nested(b)}}}")
            elif isinstance(b, float):
                items.append(f"{a}={b:.4g}")
        return ", ".join(items)

    parts = []
    for k, v in sorted(out.get("metrics", {}).items()):
        if isinstance(v, dict):
            parts.append(f"{k}: {{{nested(v)}}}")
        else:
            parts.append(f"{k}={v:.4g}")
    for k, why in sorted(out.get("skipped", {}).items()):
        parts.append(f"[{k} skipped: {why}]")
    if out.get("fid_column"):
        parts.append(f"(FID column: {out['fid_column']})")
    return "; ".join(parts)
