"""Reading PyTorch state dicts from ``.pth`` (safely) or ``.npz`` files with torch key names."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from attngan_jax.convert.common import ConversionError


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads a state dict as ``{torch_key: float32/int numpy array}``.

    ``.npz`` files are read with numpy (``allow_pickle=False``); the parity fixtures' ``in:``/``out:``
    entries are skipped and float16 tensors are widened to float32. ``.pth``/``.pt`` files need the
    optional ``torch`` extra and are read with ``torch.load(weights_only=True)``, so a checkpoint can
    never run code; the legacy (PyTorch 0.3, non-zip) format of the original release is supported.
    A full training checkpoint ``{"state_dict": ...}`` or ``{"netG": ...}`` is unwrapped when it holds
    exactly one state dict.

    Args:
        path: file to read.

    Returns:
        The state dict.

    Raises:
        FileNotFoundError: the file does not exist.
        ConversionError: the file is not a state dict, or torch is needed but not installed.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for k in z.files:
                if k.startswith(("in:", "out:")):
                    continue
                a = z[k]
                out[k] = a.astype(np.float32) if a.dtype == np.float16 else a
            return out
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
    return out
