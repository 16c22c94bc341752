"""Bilinear resizing of NHWC images with PyTorch's two ``align_corners`` conventions.

``jax.image.resize`` is not used on purpose: it antialiases when shrinking and only implements the
half-pixel (``align_corners=False``) convention. The original AttnGAN code resizes with
``nn.Upsample(size=(299, 299), mode='bilinear')`` inside the DAMSM image encoder, which on
PyTorch 0.3.1 (what the released models were trained with) behaves like ``align_corners=True`` and
on PyTorch >= 0.4 like ``align_corners=False`` (reference §16.2, fixture README behaviour 2).
pytorch-fid resizes with ``align_corners=False``.

The resize is separable, so it is computed as two small interpolation matrices applied with
``einsum`` (``out = A_h @ x @ A_w^T`` per channel). The matrices are built in numpy at trace time
with PyTorch's own float32 index arithmetic (``area_pixel_compute_source_index``), so source
indices and weights are bit-identical to torch's CPU kernel; only the summation order differs.
The result is differentiable with respect to the image (needed when the generator loss
back-propagates through the image encoder).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _weights_from_sources(src: np.ndarray, in_size: int) -> np.ndarray:
    """(out, in) float32 linear-interpolation matrix from each output's source coordinate.

    Row ``i`` mixes the two source pixels around the (non-negative) coordinate ``src[i]``,
    clamped at the last one.
    """
    out_size = len(src)
    x0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    x1 = np.minimum(x0 + 1, in_size - 1)
    w1 = (src - x0.astype(np.float32)).astype(np.float32)
    w0 = (np.float32(1.0) - w1).astype(np.float32)
    m = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(m, (rows, x0), w0)
    np.add.at(m, (rows, x1), w1)
    return m


@functools.lru_cache(maxsize=64)
def interpolation_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
    """The (out_size, in_size) matrix of one axis of torch's bilinear interpolation.

    Torch's formula (``aten/src/ATen/native/UpSample.h``), evaluated in float32 as torch does:

    * ``align_corners=True``: ``src = dst * (in - 1) / (out - 1)`` (``0`` when ``out == 1``).
    * ``align_corners=False``: ``src = (dst + 0.5) * in / out - 0.5``, clamped below at 0.

    Then ``x0 = floor(src)``, ``x1 = min(x0 + 1, in - 1)``, ``w1 = src - x0``, ``w0 = 1 - w1``.

    Args:
        in_size: source length along the axis.
        out_size: destination length.
        align_corners: which convention.

    Returns:
        float32 matrix ``M`` with ``out = M @ in`` along that axis; every row sums to 1.
    """
    dst = np.arange(out_size, dtype=np.float32)
    if align_corners:
        scale = np.float32(0.0)
        if out_size > 1:
            scale = np.float32(in_size - 1) / np.float32(out_size - 1)
        src = scale * dst
    else:
        scale = np.float32(np.float32(in_size) / np.float32(out_size))
        src = scale * (dst + np.float32(0.5)) - np.float32(0.5)
        src = np.maximum(src, np.float32(0.0))
    return _weights_from_sources(src, in_size)


def resize_bilinear(x: Array, size: tuple[int, int], align_corners: bool) -> Array:
    """Bilinear resize of NHWC images, equal to torch ``F.interpolate(mode='bilinear')``.

    Args:
        x: (B, H, W, C) float images.
        size: (out_H, out_W).
        align_corners: torch's ``align_corners`` (True = PyTorch 0.3 ``nn.Upsample`` behaviour).

    Returns:
        (B, out_H, out_W, C) in ``x``'s dtype. The identity (``x`` itself) when the size is
        unchanged, as in torch for both conventions.
    """
    _, h, w, _ = x.shape
    oh, ow = size
    if (h, w) == (oh, ow):
        return x
    a_h = jnp.asarray(interpolation_matrix(h, oh, align_corners), dtype=x.dtype)  # (oh, H)
    a_w = jnp.asarray(interpolation_matrix(w, ow, align_corners), dtype=x.dtype)  # (ow, W)
    hi = jax.lax.Precision.HIGHEST  # TF32/bf16 passes would swamp the ~1e-6 resize error
    y = jnp.einsum("oh,bhwc->bowc", a_h, x, precision=hi)  # (B, oh, W, C)
    return jnp.einsum("pw,bowc->bopc", a_w, y, precision=hi)  # (B, oh, ow, C)


@functools.lru_cache(maxsize=64)
def tf1_interpolation_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) matrix of TensorFlow 1.x ``ResizeBilinear`` (``align_corners=False``).

    The legacy TF kernel (``image_resizer_state.h``/``resize_bilinear_op.cc`` before
    ``half_pixel_centers``) maps ``src = dst * in / out`` with no half-pixel offset, then
    ``x0 = floor(src)``, ``x1 = min(x0 + 1, in - 1)``, ``w1 = src - x0``, in float32. This is the
    resize inside the 2015-12-05 Inception graph (``ExpandDims`` -> ``ResizeBilinear`` -> ``Sub``
    -> ``Mul``) that TTUR's FID and openai/improved-gan's IS feed; torch-fidelity's
    ``interpolate_bilinear_2d_like_tensorflow1x`` reproduces it the same way.

    Args:
        in_size: source length along the axis.
        out_size: destination length.

    Returns:
        float32 matrix ``M`` with ``out = M @ in`` along that axis; every row sums to 1.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * np.float32(scale)
    return _weights_from_sources(src, in_size)


def resize_bilinear_tf1(x: Array, size: tuple[int, int]) -> Array:
    """Bilinear resize of NHWC images as TensorFlow 1.x ``ResizeBilinear`` (legacy, no half pixel).

    Args:
        x: (B, H, W, C) float images.
        size: (out_H, out_W).

    Returns:
        (B, out_H, out_W, C) in ``x``'s dtype; ``x`` itself when the size is unchanged.
    """
    _, h, w, _ = x.shape
    oh, ow = size
    if (h, w) == (oh, ow):
        return x
    a_h = jnp.asarray(tf1_interpolation_matrix(h, oh), dtype=x.dtype)  # (oh, H)
    a_w = jnp.asarray(tf1_interpolation_matrix(w, ow), dtype=x.dtype)  # (ow, W)
    hi = jax.lax.Precision.HIGHEST
    y = jnp.einsum("oh,bhwc->bowc", a_h, x, precision=hi)  # (B, oh, W, C)
    return jnp.einsum("pw,bowc->bopc", a_w, y, precision=hi)  # (B, oh, ow, C)
