"""Building blocks shared by every AttnGAN network.

Conventions used throughout ``attngan_jax.models``:

* Images are NHWC inside the library (the original is NCHW; converters and parity tests transpose).
* Word features are ``(B, T, D)`` (channels last); the original uses ``(B, D, T)``.
* Every module with BatchNorm takes ``train: bool`` in ``__call__``: ``True`` uses batch
  statistics and updates the ``batch_stats`` collection (call ``apply`` with
  ``mutable=["batch_stats"]``), ``False`` uses the running statistics.
* ``dtype`` fields are the computation dtype (``jnp.bfloat16`` for mixed precision); parameters are
  always float32.

On CPU some layers compute their gradients (or their forward) with the custom-gradient kernels of
:mod:`attngan_jax.models.kernels`; the functions here choose them by backend and shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attngan_jax.models import kernels

Dtype = Any
Array = jax.Array


class BatchNorm(nn.Module):
    """PyTorch-semantics batch normalisation (``nn.BatchNorm1d/2d``).

    Normalises over every axis but the last. Differences from ``flax.linen.BatchNorm`` that matter
    for parity with the original training run: ``momentum`` is PyTorch's (weight of the *new*
    statistic, 0.1), and the running variance is updated with the *unbiased* batch variance, while
    the batch itself is normalised with the biased one.

    Batch statistics are plain means over the batch axis, so under ``jax.jit`` with a batch sharded
    over a ``Mesh`` they are statistics of the *global* batch (XLA inserts the all-reduce).

    Attributes:
        epsilon: added to the variance (1e-5 in G/D, 1e-3 in Inception).
        momentum: PyTorch momentum for the running statistics.
        dtype: computation dtype of the output.
    """

    epsilon: float = 1e-5
    momentum: float = 0.1
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool, groups: int = 1) -> Array:
        """Normalises ``x`` (B, ..., C) over all axes but the channel axis.

        Args:
            x: (B, ..., C).
            train: batch statistics (and running-statistic updates) instead of running statistics.
            groups: in training, the number of independent BatchNorm batches in ``x``, interleaved
                row by row (row ``i`` belongs to batch ``i % groups``, as
                ``jnp.stack([a, b], axis=1).reshape(-1, ...)`` lays out ``a`` and ``b``). Each is
                normalised with its own statistics and the running statistics are updated with
                each in turn, batch 0 first: the same as ``groups`` separate calls in that order,
                with one convolution over all of them before and after. Interleaved rather than
                concatenated so that a batch sharded over a mesh's ``data`` axis keeps its rows on
                their devices.

        Returns:
            ``x`` normalised, in ``dtype`` (or ``x``'s dtype).
        """
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        if not train:
            groups = 1
        if groups < 1 or x.shape[0] % groups:
            raise ValueError(f"groups={groups} must be >= 1 and divide the batch ({x.shape[0]})")
        if groups == 1:
            xg, reduce_axes = x, tuple(range(x.ndim - 1))
        else:
            xg = x.reshape(x.shape[0] // groups, groups, *x.shape[1:])  # (B/g, g, ..., C)
            reduce_axes = (0, *range(2, xg.ndim - 1))
        if train:
            xf = xg.astype(jnp.float32)
            mean = jnp.mean(xf, axis=reduce_axes, keepdims=True)  # (1, [g,] 1.., C)
            var = jnp.mean(jnp.square(xf - mean), axis=reduce_axes, keepdims=True)  # biased (torch)
            if not self.is_initializing():
                n = 1
                for a in reduce_axes:
                    n *= xg.shape[a]
                unbiased = var * (n / max(n - 1, 1))
                m = self.momentum
                batch_means = mean.reshape(groups, features)
                batch_vars = unbiased.reshape(groups, features)
                for g in range(groups):  # one torch call after the other
                    ra_mean.value = (1 - m) * ra_mean.value + m * batch_means[g]
                    ra_var.value = (1 - m) * ra_var.value + m * batch_vars[g]
        else:
            mean, var = ra_mean.value, ra_var.value
        mul = scale * jax.lax.rsqrt(var + self.epsilon)
        dtype = self.dtype or x.dtype
        y = xg.astype(jnp.float32) * mul + (bias - mean * mul)
        return y.reshape(x.shape).astype(dtype)


def glu(x: Array) -> Array:
    """Gated linear unit over the channel (last) axis: ``x[..., :C/2] * sigmoid(x[..., C/2:])``."""
    c = x.shape[-1] // 2
    return x[..., :c] * jax.nn.sigmoid(x[..., c:])


def upsample_nearest2x(x: Array) -> Array:
    """Nearest-neighbour ×2 upsampling of NHWC images: ``out[y, x] = in[y // 2, x // 2]``."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


# --- nearest ×2 upsampling followed by a 3×3 conv -------------------------------------------------

_PHASE_MIN_SIZE = 8
"""Input side (H and W) from which :class:`UpsampleConv3x3` uses the phase form on CPU."""


def upsample_conv3x3(x: Array, w: Array, method: str = "auto") -> Array:
    """``conv3x3(upsample_nearest2x(x), w)`` (padding 1, no bias), computed directly or by phases.

    The phase form (``method="phases"``,
    :func:`~attngan_jax.models.kernels.upsample_conv3x3_phases`) runs four 2×2 convolutions on the
    *input* instead of a 3×3 one on the 4× larger upsampled image: 16 instead of 36 multiply-adds
    per input pixel and channel pair, with the same result up to float32 rounding (the merged taps
    are summed before the multiply; max relative difference ~1e-6). ``"auto"`` uses it on CPU for
    inputs of at least 8×8, where it is faster forward + backward; below that the direct form
    wins; elsewhere (GPU/TPU, where cuDNN/XLA pick their own algorithms) the direct form. The
    direct form is :func:`conv2d` on the upsampled image, so on CPU its gradients take the matmul
    path for small outputs with large kernels (XLA had fused the upsampling's gradient into a slow
    YNNPACK convolution). The measurements are in docs/performance.md.

    Args:
        x: (B, H, W, Ci).
        w: (3, 3, Ci, Co) kernel (HWIO), in ``x``'s dtype.
        method: ``"auto"``, ``"direct"`` or ``"phases"``.

    Returns:
        (B, 2H, 2W, Co).
    """
    _, h, wd, _ = x.shape
    if method == "auto":
        big = min(h, wd) >= _PHASE_MIN_SIZE
        method = "phases" if big and jax.default_backend() == "cpu" else "direct"
    if method == "direct":
        return conv2d(upsample_nearest2x(x), w, (1, 1), ((1, 1), (1, 1)))
    if method != "phases":
        raise ValueError(f"method must be 'auto', 'direct' or 'phases', got {method!r}")
    return kernels.upsample_conv3x3_phases(x, w)


class UpsampleConv3x3(nn.Module):
    """Nearest ×2 upsampling then ``conv3x3`` (the first two layers of ``upBlock``), as one module.

    Holds the same ``kernel`` parameter (3, 3, C_in, features) as the ``nn.Conv`` it replaces, so
    checkpoints and converted weights are unchanged; see :func:`upsample_conv3x3` for ``method``.

    Attributes:
        features: output channels.
        method: ``"auto"``, ``"direct"`` or ``"phases"``.
        dtype: computation dtype.
        kernel_init: initialiser (the reference's ``weights_init`` is orthogonal).
    """

    features: int
    method: str = "auto"
    dtype: Dtype | None = None
    kernel_init: Any = nn.initializers.orthogonal()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, H, W, C_in) -> (B, 2H, 2W, features)."""
        kernel = self.param(
            "kernel", self.kernel_init, (3, 3, x.shape[-1], self.features), jnp.float32
        )
        dtype = self.dtype or jnp.result_type(x, kernel)
        return upsample_conv3x3(x.astype(dtype), kernel.astype(dtype), self.method)


# --- convolution with a choice of gradient kernels ------------------------------------------------

_MATMUL_GRAD_MAX_OUT = 64
"""Largest output ``H·W`` for which ``conv2d(..., grad="auto")`` computes its gradients as matmuls."""
_MATMUL_GRAD_MIN_KERNEL = 2**20
"""Smallest kernel (elements) for that: the gains were on kernels of millions of elements, while
including every small map made the shapes demo's small discriminator slower and longer to compile."""
_IM2COL_MAX_OUT = 4
"""Largest output ``H·W`` for which ``conv2d(..., grad="auto")`` computes a *padded* convolution as
one matmul over its patches (:func:`~attngan_jax.models.kernels.conv_im2col`), forward included:
XLA:CPU's forward was 22x and its gradients 15x slower on the shapes demo's 3×3 256→256 conv on
2×2 maps (docs/performance.md)."""


def conv2d(
    x: Array,
    w: Array,
    strides: tuple[int, int] = (1, 1),
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
    grad: str = "auto",
) -> Array:
    """NHWC/HWIO convolution (XLA's forward) with a choice of how its gradients are computed.

    ``grad="matmul"`` (:data:`~attngan_jax.models.kernels.conv_matmul_grad`) computes both gradients
    as matmuls over the ``k_h·k_w`` input patches (im2col): the kernel gradient as ``patchesᵀ · dz``
    and the input gradient as ``dz · Wᵀ`` scattered back (col2im). On small feature maps with many
    channels (the discriminators' deepest layers, e.g. 4×4 stride 2 from 8×8×1024 to 4×4×2048, or
    3×3 convs on 4×4×2048) XLA:CPU's transposed convolutions ran at a fraction of its forward
    speed and this is faster forward + backward; on large maps XLA's own gradient wins and the
    patches would cost memory. ``"auto"`` = ``"matmul"`` on CPU when the output has at most 64
    pixels (8×8) and the kernel at least 2^20 elements, else ``"xla"``. Same values; the gradients
    differ by float32 summation order.

    ``grad="im2col"`` (:func:`~attngan_jax.models.kernels.conv_im2col`) computes the forward too
    as one matmul over the patches, with JAX's gradients of it. XLA:CPU's convolutions on tiny
    padded maps (a 3×3 conv on 2×2, or stride 2 from 4×4 to 2×2) ran at a few GFLOP/s in both
    directions; ``"auto"`` = ``"im2col"`` on CPU for padded convolutions with at most 4 output
    pixels. Same values up to float32 summation order.

    ``grad="s2d"`` (:data:`~attngan_jax.models.kernels.conv_s2d_grad`; strided convolutions whose
    kernel size is a multiple of the stride, e.g. the discriminators' 4×4 stride-2 downsampling
    convs) keeps XLA's strided forward and computes both gradients as the gradients of the equal
    stride-1 convolution on the space-to-depth input (the input folded ``s×s`` into channels, the
    kernel likewise; :func:`~attngan_jax.models.kernels.conv_s2d`). XLA:CPU's transposed
    convolutions for strides > 1 were slower than those of the stride-1 form. ``"auto"`` =
    ``"s2d"`` on CPU for such convolutions when ``"matmul"`` does not apply. The measurements are
    in docs/performance.md.

    Args:
        x: (B, H, W, Ci).
        w: (kh, kw, Ci, Co).
        strides: (sh, sw).
        padding: ((top, bottom), (left, right)).
        grad: ``"auto"``, ``"xla"``, ``"matmul"``, ``"im2col"`` or ``"s2d"``.

    Returns:
        (B, Ho, Wo, Co).
    """
    strides = tuple(strides)
    padding = tuple(tuple(p) for p in padding)
    if grad == "auto":
        ho, wo = kernels.conv_out_hw(x.shape, w.shape[:2], strides, padding)
        small = ho * wo <= _MATMUL_GRAD_MAX_OUT and w.size >= _MATMUL_GRAD_MIN_KERNEL
        tiny_padded = ho * wo <= _IM2COL_MAX_OUT and any(p > 0 for pair in padding for p in pair)
        foldable = kernels.s2d_applies(w.shape, strides)
        if jax.default_backend() != "cpu":
            grad = "xla"
        elif tiny_padded:
            grad = "im2col"
        else:
            grad = "matmul" if small else "s2d" if foldable else "xla"
    if grad == "xla":
        return kernels.conv_nhwc(x, w, strides, padding)
    if grad == "matmul":
        return kernels.conv_matmul_grad(x, w, strides, padding)
    if grad == "im2col":
        return kernels.conv_im2col(x, w, strides, padding)
    if grad == "s2d":
        if not kernels.s2d_applies(w.shape, strides):
            raise ValueError(
                f"grad='s2d' needs equal strides > 1 that divide the kernel size; got kernel "
                f"{w.shape[:2]} and strides {strides}"
            )
        return kernels.conv_s2d_grad(x, w, strides, padding)
    raise ValueError(f"grad must be 'auto', 'xla', 'matmul', 'im2col' or 's2d', got {grad!r}")


class Conv(nn.Module):
    """``flax.linen.Conv`` (explicit padding, NHWC) computed by :func:`conv2d`.

    Same ``kernel`` (kh, kw, C_in, features) and ``bias`` parameters, initialisers and dtype
    handling as ``nn.Conv``, so checkpoints and converted weights do not change.

    Attributes:
        features: output channels.
        kernel_size: (kh, kw).
        strides: (sh, sw).
        padding: ((top, bottom), (left, right)).
        use_bias: add a bias.
        dtype: computation dtype (parameters are float32).
        kernel_init: kernel initialiser.
        bias_init: bias initialiser.
        grad: gradient method of :func:`conv2d`.
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    use_bias: bool = False
    dtype: Dtype | None = None
    kernel_init: Any = nn.initializers.orthogonal()
    bias_init: Any = nn.initializers.zeros_init()
    grad: str = "auto"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, H, W, C_in) -> (B, Ho, Wo, features)."""
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        bias = (
            self.param("bias", self.bias_init, (self.features,), jnp.float32)
            if self.use_bias
            else None
        )
        dtype = self.dtype or jnp.result_type(x, kernel)
        y = conv2d(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding, self.grad)
        return y if bias is None else y + bias.astype(dtype)


def conv(
    features: int,
    kernel: int | Sequence[int],
    stride: int = 1,
    padding: int | Sequence[tuple[int, int]] = 0,
    use_bias: bool = False,
    dtype: Dtype | None = None,
    name: str | None = None,
    kernel_init: Any = nn.initializers.orthogonal(),
) -> Conv:
    """A :class:`Conv` (``flax.linen.Conv`` parameters) with PyTorch-style explicit symmetric padding.

    Args:
        features: output channels.
        kernel: kernel size (int or (kh, kw)).
        stride: stride in both spatial axes.
        padding: int (same on every side) or explicit ((top, bottom), (left, right)).
        use_bias: whether the conv has a bias (the reference's conv3x3/conv1x1 do not).
        dtype: computation dtype.
        name: module name (mirrors the torch key, see ``attngan_jax.convert``).
        kernel_init: initialiser (the reference's ``weights_init`` is orthogonal).

    Returns:
        The conv module.
    """
    ks = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    pad = ((padding, padding), (padding, padding)) if isinstance(padding, int) else tuple(padding)
    return Conv(
        features,
        ks,
        strides=(stride, stride),
        padding=pad,
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=kernel_init,
        name=name,
    )


def conv3x3(features: int, dtype: Dtype | None = None, name: str | None = None) -> Conv:
    """3×3 conv, stride 1, padding 1, no bias (the reference's ``conv3x3``)."""
    return conv(features, 3, 1, 1, dtype=dtype, name=name)


def conv1x1(features: int, dtype: Dtype | None = None, name: str | None = None) -> Conv:
    """1×1 conv, no bias (the reference's ``conv1x1``)."""
    return conv(features, 1, 1, 0, dtype=dtype, name=name)


# --- pools ----------------------------------------------------------------------------------------


def max_pool(
    x: Array,
    window: tuple[int, int],
    strides: tuple[int, int],
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
) -> Array:
    """``nn.max_pool`` (NHWC) with a gradient that avoids XLA's ``select_and_scatter``.

    Same values and same gradient as ``flax.linen.max_pool`` / ``torch.nn.MaxPool2d`` (each output's
    gradient goes to the *first* maximum of its window in row-major order, so ties after a ReLU are
    resolved as PyTorch does). XLA:CPU lowers the standard max-pool gradient to
    ``select_and_scatter``, which was slow on Inception's pools; the gradient here
    (:func:`~attngan_jax.models.kernels.max_pool_valid`) is k_h·k_w strided compare/select/pad
    passes, much faster (docs/performance.md).

    Args:
        x: (B, H, W, C).
        window: ``(k_h, k_w)``.
        strides: ``(s_h, s_w)``.
        padding: ``((top, bottom), (left, right))``; padded positions are −inf (never selected).

    Returns:
        (B, H_out, W_out, C).
    """
    if any(p for pair in padding for p in pair):
        x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
    return kernels.max_pool_valid(x, tuple(window), tuple(strides))


def avg_pool3x3_same(x: Array, count_include_pad: bool) -> Array:
    """3x3 average pool, stride 1, padding 1 (NHWC), as shifted-slice sums.

    Equals ``nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=...)`` up to float
    summation order. The slices fuse into single elementwise loops, faster than XLA:CPU's
    reduce-window. The pool is a symmetric box filter followed by a division, so its gradient is
    the same box filter of ``dy / counts`` (``custom_vjp``,
    :func:`~attngan_jax.models.kernels.avg_pool3x3`): one more shifted-slice sum, where
    differentiating the slices gives a chain of pads that was slow in Inception's backward
    (docs/performance.md).

    Args:
        x: (B, H, W, C).
        count_include_pad: divide by 9 everywhere (torch's default) or by the number of real
            pixels in each window.

    Returns:
        (B, H, W, C).
    """
    return kernels.avg_pool3x3(x, count_include_pad)
