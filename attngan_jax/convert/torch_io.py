"""Reading PyTorch state dicts from ``.pth`` (safely), ``.npz`` or ``.safetensors`` files."""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from attngan_jax.convert.common import ConversionError
from attngan_jax.errors import MissingInputError


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads a state dict as ``{torch_key: float32/int numpy array}``.

    ``.npz`` files are read with numpy (``allow_pickle=False``); the parity fixtures' ``in:``/``out:``
    entries are skipped and float16 tensors are widened to float32. ``.safetensors`` files (a JSON
    header and raw little-endian data) are read with numpy alone, float16/bfloat16 widened too. ``.pth``/``.pt`` files need the
    optional ``torch`` extra and are read with ``torch.load(weights_only=True)``, so a checkpoint can
    never run code; the legacy (PyTorch 0.3, non-zip) format of the original release is supported.
    A full training checkpoint ``{"state_dict": ...}`` or ``{"netG": ...}`` is unwrapped when it holds
    exactly one state dict.

    Args:
        path: file to read.

    Returns:
        The state dict.

    Raises:
        MissingInputError: the file does not exist (a ``FileNotFoundError``).
        ConversionError: the file is not a state dict (damaged, truncated, no tensors), or torch
            is needed but not installed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingInputError(f"checkpoint file not found: {path}")
    if path.endswith(".npz"):
        return _load_npz(path)
    if path.endswith(".safetensors"):
        return _load_safetensors(path)
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConversionError(
            f"{path}: reading .pth files needs PyTorch. Install the optional extra "
            "(`pip install 'attngan-jax[torch]'`, or on a CPU-only machine `pip install torch`), "
            "or convert the file to .npz with torch key names elsewhere."
        ) from e
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError and friends
        raise ConversionError(
            f"{path}: could not be read as a weights-only PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Files that need arbitrary code to load "
            "are refused on purpose; re-save the state_dict() only."
        ) from e
    if isinstance(obj, dict) and not any(hasattr(v, "shape") for v in obj.values()):
        inner = [v for v in obj.values() if isinstance(v, dict)]
        if len(inner) == 1:
            obj = inner[0]
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj)}")
    out = {}
    for k, v in obj.items():
        if not hasattr(v, "detach"):
            continue
        a = v.detach().cpu()
        out[str(k)] = a.float().numpy() if a.is_floating_point() else a.numpy()
    if not out:
        raise ConversionError(
            f"{path}: holds no tensors (keys {sorted(map(str, obj))[:6]}); expected a state_dict()"
        )
    return out


def _load_npz(path: str) -> dict[str, np.ndarray]:
    """An ``.npz`` of torch-keyed arrays (``in:``/``out:`` fixture entries skipped, f16 -> f32)."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConversionError(
            f"{path}: not a readable .npz ({type(e).__name__}: {e}); the file is damaged or "
            "truncated, or was saved with pickled objects: save plain arrays with np.savez"
        ) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ConversionError(f"{path}: a single array, not an .npz of named arrays")
    out = {}
    with z:
        for k in z.files:
            if k.startswith(("in:", "out:")):
                continue
            try:
                a = z[k]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise ConversionError(
                    f"{path}: array '{k}' cannot be read ({type(e).__name__}: {e}); the file is "
                    "damaged or holds pickled objects"
                ) from None
            out[k] = a.astype(np.float32) if a.dtype == np.float16 else a
    if not out:
        raise ConversionError(f"{path}: holds no arrays")
    return out


_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
    "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file: 8-byte header length, JSON header, raw data (f16/bf16 -> f32)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            data = f.read()
        out = {}
        for k, info in header.items():
            if k == "__metadata__":
                continue
            start, end = info["data_offsets"]
            a = np.frombuffer(data[start:end], _SAFETENSORS_DTYPES[info["dtype"]])
            a = a.reshape(info["shape"])
            if info["dtype"] == "BF16":
                a = (a.astype(np.uint32) << 16).view(np.float32)
            out[k] = a.astype(np.float32) if a.dtype == np.float16 else a.copy()
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ConversionError(
            f"{path}: not a readable .safetensors file ({type(e).__name__}: {e}); damaged or "
            "truncated?"
        ) from None
    if not out:
        raise ConversionError(f"{path}: holds no tensors")
    return out
