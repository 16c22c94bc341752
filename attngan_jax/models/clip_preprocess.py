"""Images -> CLIP's normalised input, in JAX (no torch, no PIL): two documented pipelines.

Both take NHWC images, either float in [-1, 1] (the generator's output) or uint8 in [0, 255], and
return float32 NHWC at ``size`` x ``size`` (the CLIP spec's ``image_size``, 224 for ViT-B/32),
normalised with CLIP's mean and std (:data:`CLIP_MEAN`, :data:`CLIP_STD`).

``openai`` (open_clip's / OpenAI's ``preprocess``, used by TISE's CLIP R-precision):
    ``u = (x + 1) / 2`` (uint8: ``u = v / 255``); resize the shorter side to ``size`` with
    ``jax.image.resize(..., "bicubic", antialias=True)`` (Keys cubic, a = -0.5, the kernel widened
    when downsampling: PIL's ``Image.BICUBIC``, which open_clip's ``Resize`` applies to PIL
    images); centre crop ``size`` x ``size`` (torchvision's offsets ``round((h - size) / 2)``);
    ``(u - mean) / std``. This equals torchvision's ``Resize`` on tensors (torch's
    ``F.interpolate(mode="bicubic", antialias=True)``) to 1e-6. open_clip on a PIL image differs
    by PIL's uint8 output (rounded, clipped to [0, 255]) and fixed-point arithmetic: measured on
    256 -> 224, mean 0.3/255, max 1.1/255 on smooth images, max 36/255 on white noise (where PIL
    clips the overshoot). torch's default ``F.interpolate(mode="bicubic")`` is another kernel
    (a = -0.75, no antialias): mean 0.6/255, max 3.1/255 on smooth images (docs/clip.md).

``galip`` (tobran/GALIP ``code/lib/modules.py:calculate_FID_CLIP_sim`` and
``code/lib/utils.py:transf_to_CLIP_input``, what its CLIP score uses), exactly::

    fake_imgs = torch.clamp(fake_imgs, -1., 1.)                       # and nan_to_num(nan=-1)
    inputs = F.interpolate(inputs * 0.5 + 0.5, size=(224, 224))      # mode "nearest"
    inputs = ((inputs + 1) * 0.5 - mean) / var                         # var holds CLIP's std

i.e. the [-1, 1] -> [0, 1] map is applied twice (images reach CLIP in [0.5, 1]) and the resize is
torch's legacy nearest neighbour (source index ``floor(i * in / out)``, float32 scale), no crop.
Reproduced as written: GALIP's published CLIP scores come from it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax.types import Array

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PIPELINES = ("openai", "galip")


def _as_signed(images: Array) -> Array:
    """Floats in [-1, 1] (uint8 v -> v / 127.5 - 1)."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 127.5 - 1.0
    return images.astype(jnp.float32)


def _as_unit(images: Array) -> Array:
    """Floats in [0, 1]: uint8 v / 255, float x -> (x + 1) / 2."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return (images.astype(jnp.float32) + 1.0) * 0.5


def _normalise(u: Array) -> Array:
    return (u - jnp.asarray(CLIP_MEAN, jnp.float32)) / jnp.asarray(CLIP_STD, jnp.float32)


def resize_shorter_center_crop(u: Array, size: int) -> Array:
    """Bicubic resize of the shorter side to ``size``, then the centre ``size`` x ``size``.

    Args:
        u: (B, H, W, C) float images.
        size: output side.

    Returns:
        (B, size, size, C); the resize is skipped where the shorter side is ``size`` already.
    """
    b, h, w, c = u.shape
    short, long = min(h, w), max(h, w)
    if short != size:
        other = int(size * long / short)  # torchvision's Resize(int): the long side truncated
        nh, nw = (size, other) if h <= w else (other, size)
        u = jax.image.resize(u, (b, nh, nw, c), "bicubic", antialias=True)
    top = int(round((u.shape[1] - size) / 2.0))  # torchvision's center_crop offsets
    left = int(round((u.shape[2] - size) / 2.0))
    return u[:, top : top + size, left : left + size]


def torch_nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source indices of torch's legacy ``nearest``: ``min(floor(i * float32(in / out)), in - 1)``."""
    scale = np.float32(in_size) / np.float32(out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def preprocess(images: Array, size: int, pipeline: str = "openai") -> Array:
    """Images -> CLIP's input (see the module docstring for each pipeline).

    Args:
        images: (B, H, W, 3) float in [-1, 1] or uint8.
        size: CLIP's input side (``CLIPSpec.image_size``).
        pipeline: ``"openai"`` or ``"galip"``.

    Returns:
        (B, size, size, 3) float32, normalised.
    """
    if pipeline == "openai":
        return _normalise(resize_shorter_center_crop(_as_unit(images), size))
    if pipeline == "galip":
        x = jnp.nan_to_num(jnp.clip(_as_signed(images), -1.0, 1.0), nan=-1.0)  # GALIP's clamp
        u = x * 0.5 + 0.5  # GALIP: inputs * 0.5 + 0.5
        rows = torch_nearest_indices(u.shape[1], size)
        cols = torch_nearest_indices(u.shape[2], size)
        u = u[:, rows][:, :, cols]  # (B, size, size, 3)
        return _normalise((u + 1.0) * 0.5)  # GALIP's second (x + 1) * 0.5
    raise ValueError(f"unknown CLIP preprocessing {pipeline!r}; choose from {PIPELINES}")
