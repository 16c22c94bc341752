"""The fixed caption list of ``--protocol=fixed_r_precision`` (TISE's ``CUB_RP_captions.pkl`` idea).

TISE (VinAIResearch/tise-toolbox ``text_relevance/RP_cub.py``) scores every method on one saved
list: per entry a test caption, the image generated from it, and 99 fixed mismatched captions. Ours
is an ``.npz`` built once from the prepared split and a seed, then only read:

* ``query_record`` (N,), ``query_caption`` (N,): entry ``n`` is caption ``query_caption[n]`` of test
  record ``query_record[n] = n % R`` (R records). Each record's captions are visited in an order
  drawn once per record (``rng.permutation``), so pass ``p`` over the split takes its ``p``-th
  caption: N = R x captions-per-image uses every caption once.
* ``mis_record`` (N, M), ``mis_caption`` (N, M): M = 99 mismatches per entry, records of another
  class (another record for datasets without classes: COCO, custom), drawn with replacement
  (DM-GAN's ``get_mis_caption``), each with a uniformly drawn caption.
* ``meta``: JSON of the dataset name, split, seed, counts, format version and ``fingerprint``
  (sha256 of the split's captions and classes): a list is refused for another dataset.

All draws come from ``np.random.default_rng(seed)`` in this order; the file is written with fixed
zip timestamps, so the same inputs give the same bytes (:func:`file_digest` names it in the JSON).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile

import numpy as np

from attngan_jax.data import pipeline
from attngan_jax.errors import InputError, MissingInputError
from attngan_jax.runtime import atomic

FORMAT = "attngan-jax fixed R-precision list v1"
_ARRAYS = ("query_record", "query_caption", "mis_record", "mis_caption")


@dataclasses.dataclass
class CaptionList:
    """A fixed R-precision list (see the module docstring); captions index the split's captions."""

    query_record: np.ndarray
    query_caption: np.ndarray
    mis_record: np.ndarray
    mis_caption: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return len(self.query_record)

    def global_ids(self, caps: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(query (N,), mismatched (N, M))`` as indices into the split's captions."""
        start = caps["cap_start"]
        return (start[self.query_record] + self.query_caption,
                start[self.mis_record] + self.mis_caption)  # fmt: skip


def fingerprint(caps: dict[str, np.ndarray]) -> str:
    """sha256 of a split's captions (tokens, lengths, captions per record) and classes."""
    h = hashlib.sha256()
    for k in ("tokens", "cap_lens", "num_caps", "class_id"):
        h.update(np.ascontiguousarray(caps[k], dtype=np.int64).tobytes())
    return h.hexdigest()


def build(
    caps: dict[str, np.ndarray],
    num_queries: int,
    seed: int,
    per_image_class: bool,
    mismatched: int = 99,
    meta: dict | None = None,
) -> CaptionList:
    """Draws a list from a split's captions (:func:`attngan_jax.data.pipeline.split_captions`).

    Args:
        caps: the split's captions.
        num_queries: N entries.
        seed: the only source of randomness.
        per_image_class: mismatches from any other record (no classes), else another class.
        mismatched: M per entry.
        meta: extra metadata (dataset, split).

    Returns:
        The :class:`CaptionList`.
    """
    rng = np.random.default_rng(seed)
    num_caps = caps["num_caps"].astype(np.int64)
    records = len(num_caps)
    cls = np.arange(records) if per_image_class else caps["class_id"]
    if np.all(cls == cls[0]):
        raise InputError("every test record has the same class: no mismatched caption exists")
    order = [rng.permutation(int(k)) for k in num_caps]  # each record's caption order
    q_rec = np.arange(num_queries, dtype=np.int64) % records
    q_pass = np.arange(num_queries, dtype=np.int64) // records
    q_cap = np.array([order[r][p % num_caps[r]] for r, p in zip(q_rec, q_pass)], np.int64)
    mis = rng.integers(0, records, size=(num_queries, mismatched))  # (N, M)
    bad = cls[mis] == cls[q_rec][:, None]
    while bad.any():  # rejection: redraw mismatches of the query's own class
        mis[bad] = rng.integers(0, records, size=int(bad.sum()))
        bad = cls[mis] == cls[q_rec][:, None]
    mis_cap = np.floor(rng.random(mis.shape) * num_caps[mis]).astype(np.int64)
    meta = {**(meta or {}), "format": FORMAT, "seed": int(seed), "num_queries": int(num_queries),
            "mismatched": int(mismatched), "per_image_class": bool(per_image_class),
            "fingerprint": fingerprint(caps)}  # fmt: skip
    i32 = lambda a: np.asarray(a, np.int32)  # noqa: E731
    return CaptionList(i32(q_rec), i32(q_cap), i32(mis), i32(mis_cap), meta)


def save(lst: CaptionList, path: str) -> None:
    """Writes ``lst`` as an ``.npz`` with fixed timestamps (same list, same bytes), atomically."""
    arrays = {k: getattr(lst, k) for k in _ARRAYS}
    arrays["meta"] = np.frombuffer(json.dumps(lst.meta, sort_keys=True).encode(), np.uint8)
    with atomic.replacing(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())


def load(path: str, caps: dict[str, np.ndarray] | None = None) -> CaptionList:
    """Reads a list; with ``caps``, checks that it was drawn from this split.

    Raises:
        MissingInputError: no such file.
        InputError: not a list of this format, or drawn from other captions.
    """
    if not os.path.isfile(path):
        raise MissingInputError(f"fixed R-precision list not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _ARRAYS}
            meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: not a fixed R-precision list ({e})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if caps is not None and meta["fingerprint"] != fingerprint(caps):
        raise InputError(
            f"{path} was drawn from other captions than this split's (fingerprint "
            f"{meta['fingerprint'][:12]} vs {fingerprint(caps)[:12]}): another dataset or a "
            "re-prepared one; pass another --rp_list"
        )
    return CaptionList(**arrays, meta=meta)


def load_or_create(
    path: str, caps: dict[str, np.ndarray], num_queries: int, seed: int, per_image_class: bool,
    meta: dict | None = None,
) -> CaptionList:  # fmt: skip
    """The list at ``path``, drawn and saved first if there is none."""
    if not os.path.exists(path):
        save(build(caps, num_queries, seed, per_image_class, meta=meta), path)
    return load(path, caps)


def default_path(data_path: str, split: str, num_queries: int, seed: int) -> str:
    """Where a list lives by default: beside the prepared dataset (shared by every model)."""
    return os.path.join(data_path, f"fixed_rp_{split}_n{num_queries}_seed{seed}.npz")


def file_digest(path: str) -> str:
    """sha256 of the list file (names the exact list in the metrics JSON)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def caption_ids(caps: dict[str, np.ndarray], ids: np.ndarray, length: int) -> np.ndarray:
    """(K,) global caption indices -> (K, length) int32 zero-padded word ids (no truncation)."""
    out = np.zeros((len(ids), length), np.int32)
    t0, t1 = caps["tok_start"][ids], caps["tok_start"][ids + 1]
    for i, (a, b) in enumerate(zip(t0, t1)):
        out[i, : b - a] = caps["tokens"][a:b]
    return out


def split_captions(data_path: str, split: str) -> dict[str, np.ndarray]:
    """The split's captions (re-exported for the evaluators)."""
    return pipeline.split_captions(data_path, split)
