"""R-precision (1 of 100) of generated images with DAMSM features (reference §14.2).

Protocol of the widely used re-implementation (MinfengZhu/DM-GAN ``trainer.sampling``; the
official AttnGAN repository has none): for generated image ``i`` compute the cosine similarity of
its global DAMSM image code ``cnn_code_i`` (D = 256) with ``[sent_emb_i; 99 mismatched sentence
embeddings]`` (``scores / clamp(|a| |b|, 1e-8)``); a hit if the true caption ranks first
(``argmax == 0``, so an exact tie counts as a hit). The 0/1 hits of N = 30,000 queries are shuffled
and split into 10 folds; report mean and (population) std of the fold means.

DM-GAN quirk: each fold mean is ``np.average(R[i*3000:(i+1)*3000-1])``, which drops the last element
of every fold (2999 of 3000 used). The default here uses all elements (``np.array_split`` of the
shuffled hits); ``dmgan_fold_quirk=True`` reproduces DM-GAN's slices (folds of ``N // folds`` minus
one element). The difference is far below the reported stds.

Mismatched captions (``datasets.get_mis_caption``): DM-GAN draws 99 random test *images* whose class
id differs from the query's, with replacement, and one random caption of each. (Its
``random.randint(0, number_example)`` is inclusive of the upper bound, an off-by-one not reproduced
here.) :func:`sample_mismatched_indices` draws indices into whatever pool of candidate captions the
caller holds: pass one class id per candidate caption to get caption indices directly.
"""

from __future__ import annotations

import numpy as np


def r_precision_hits(
    image_codes: np.ndarray, true_sent: np.ndarray, mismatched_sent: np.ndarray
) -> np.ndarray:
    """Per-query hit indicator.

    Args:
        image_codes: (N, D) image codes.
        true_sent: (N, D) embedding of each image's own caption.
        mismatched_sent: (N, M, D) embeddings of M mismatched captions per image (M = 99).

    Returns:
        (N,) bool, True where the true caption has the largest cosine (ties count as hits).
    """
    img = np.asarray(image_codes, np.float64)
    cand = np.concatenate(
        [np.asarray(true_sent, np.float64)[:, None], np.asarray(mismatched_sent, np.float64)], 1
    )
    # cand: (N, 1 + M, D), true caption first
    dots = np.einsum("nd,nkd->nk", img, cand)  # (N, 1 + M)
    norms = np.linalg.norm(img, axis=1)[:, None] * np.linalg.norm(cand, axis=2)  # (N, 1 + M)
    cos = dots / np.maximum(norms, 1e-8)
    return np.argmax(cos, axis=1) == 0


def fold_statistics(
    hits: np.ndarray, folds: int = 10, seed: int | None = 0, dmgan_fold_quirk: bool = False
) -> tuple[float, float]:
    """Shuffles 0/1 hits, splits them into folds and returns (mean, std) of the fold means.

    Args:
        hits: (N,) hit indicators.
        folds: number of folds (10).
        seed: shuffle seed (``np.random.default_rng``); None = fresh entropy.
        dmgan_fold_quirk: DM-GAN's slices ``[i*L : (i+1)*L - 1]`` with ``L = N // folds``.

    Returns:
        ``(mean, std)`` of the fold means, as fractions in [0, 1] (papers print percentages).
    """
    r = np.asarray(hits, np.float64).copy()
    if len(r) < folds:
        raise ValueError(f"{len(r)} queries cannot fill {folds} folds")
    np.random.default_rng(seed).shuffle(r)
    if dmgan_fold_quirk:
        fold_len = len(r) // folds
        if fold_len < 2:  # each fold drops one of its fold_len elements: nothing would be left
            raise ValueError(
                f"{len(r)} queries: DM-GAN's folds use {fold_len} - 1 of each {folds}th; "
                f"need at least {2 * folds}"
            )
        means = np.array(
            [np.average(r[i * fold_len : (i + 1) * fold_len - 1]) for i in range(folds)]
        )
    else:
        means = np.array([part.mean() for part in np.array_split(r, folds)])
    return float(means.mean()), float(means.std())


def r_precision(
    image_codes: np.ndarray,
    true_sent: np.ndarray,
    mismatched_sent: np.ndarray,
    folds: int = 10,
    seed: int | None = 0,
    dmgan_fold_quirk: bool = False,
) -> tuple[float, float]:
    """R-precision (r = 1 of 1 + M candidates) by the DAMSM/DM-GAN protocol.

    Args:
        image_codes: (N, D) DAMSM ``cnn_code`` of the generated images.
        true_sent: (N, D) DAMSM ``sent_emb`` of the caption each image was generated from.
        mismatched_sent: (N, 99, D) sentence embeddings of mismatched captions (see
            :func:`sample_mismatched_indices`).
        folds: number of folds for the std (10).
        seed: shuffle seed of the fold assignment.
        dmgan_fold_quirk: drop the last element of every fold like DM-GAN.

    Returns:
        ``(mean, std)`` as fractions (multiply by 100 for the papers' percentages).
    """
    return fold_statistics(
        r_precision_hits(image_codes, true_sent, mismatched_sent), folds, seed, dmgan_fold_quirk
    )


def sample_mismatched_indices(
    class_ids: np.ndarray | None,
    num: int = 99,
    rng: np.random.Generator | None = None,
    n: int | None = None,
) -> np.ndarray:
    """Draws ``num`` mismatched candidates per query, with replacement.

    Args:
        class_ids: (N,) class id of every candidate; query ``i`` is candidate ``i`` and only
            candidates of another class are drawn (CUB). None: any other index ``j != i`` (COCO,
            which has no classes); then ``n`` gives N.
        num: mismatches per query (99).
        rng: numpy Generator (default: ``np.random.default_rng(0)``).
        n: number of queries/candidates when ``class_ids`` is None.

    Returns:
        (N, num) int64 indices into the candidates.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    if class_ids is None:
        if n is None or n < 2:
            raise ValueError("without class ids, pass n >= 2 (the number of candidates)")
        ids = np.arange(n)  # every item is its own class
    else:
        ids = np.asarray(class_ids)
        n = len(ids)
        if np.all(ids == ids[0]):
            raise ValueError("all candidates share one class id: no mismatched caption exists")
    out = rng.integers(0, n, size=(n, num))
    bad = ids[out] == ids[:, None]  # (N, num) same class as the query: redraw (rejection sampling)
    while bad.any():
        out[bad] = rng.integers(0, n, size=int(bad.sum()))
        bad = ids[out] == ids[:, None]
    return out
