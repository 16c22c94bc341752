"""Building blocks shared by every AttnGAN network.

Conventions used throughout ``attngan_jax.models``:

* Images are NHWC inside the library (the original is NCHW; converters and parity tests transpose).
* Word features are ``(B, T, D)`` (channels last); the original uses ``(B, D, T)``.
* Every module with BatchNorm takes ``train: bool`` in ``__call__``: ``True`` uses batch
  statistics and updates the ``batch_stats`` collection (call ``apply`` with
  ``mutable=["batch_stats"]``), ``False`` uses the running statistics.
* ``dtype`` fields are the computation dtype (``jnp.bfloat16`` for mixed precision); parameters are
  always float32.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


# --- convolution helpers -------------------------------------------------------------------------


def _conv_nhwc(x: Array, w: Array, strides, padding) -> Array:
    """XLA's NHWC/HWIO convolution (no bias)."""
    return jax.lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _tap_indices(kernel_hw, strides, out_hw) -> list[tuple[slice, slice, slice]]:
    """Per kernel tap (row-major), the index of the padded-input pixels it multiplies."""
    (kh, kw), (sh, sw), (ho, wo) = kernel_hw, strides, out_hw
    return [
        (slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]


def _im2col(xp: Array, kernel_hw, strides, out_hw) -> Array:
    """(B, H, W, C) padded input -> (B, Ho, Wo, kh·kw·C) patches, ordered (tap row, tap col, c)."""
    return jnp.concatenate([xp[idx] for idx in _tap_indices(kernel_hw, strides, out_hw)], axis=-1)


# --- nearest ×2 upsampling followed by a 3×3 conv, as four 2×2 "phase" convolutions ---------------

_PHASE_MIN_SIZE = 8
"""Input side (H and W) from which :class:`UpsampleConv3x3` uses the phase form on CPU."""


def _phase_kernel(w: Array) -> Array:
    """(3, 3, Ci, Co) kernel of a conv on the ×2 upsampled image -> (2, 2, Ci, 4·Co) on the input.

    Output pixel ``(2i + a, 2j + b)`` of ``conv3x3(upsample(x))`` reads upsampled rows
    ``2i + a - 1 .. 2i + a + 1``, i.e. input rows ``(i - 1, i, i)`` for ``a = 0`` and ``(i, i, i + 1)``
    for ``a = 1`` (same for columns). Merging the taps that read the same input pixel gives, per
    phase ``(a, b)``, a 2×2 kernel: rows ``[w0, w1 + w2]`` (a = 0) or ``[w0 + w1, w2]`` (a = 1). The
    output channel axis is ordered ``(a, b, o)``.
    """
    rows = jnp.stack([jnp.stack([w[0], w[1] + w[2]]), jnp.stack([w[0] + w[1], w[2]])])
    # rows: (a, r, 3, Ci, Co) -> merge the columns the same way -> (a, b, r, c, Ci, Co)
    cols = jnp.stack(
        [
            jnp.stack([rows[:, :, 0], rows[:, :, 1] + rows[:, :, 2]], axis=2),
            jnp.stack([rows[:, :, 0] + rows[:, :, 1], rows[:, :, 2]], axis=2),
        ],
        axis=1,
    )
    ci, co = w.shape[2:]
    return cols.transpose(2, 3, 4, 0, 1, 5).reshape(2, 2, ci, 4 * co)


def _conv2x2_pad1(x: Array, k: Array) -> Array:
    """(B, H, W, Ci) * (2, 2, Ci, C) with padding 1 -> (B, H + 1, W + 1, C)."""
    return _conv_nhwc(x, k, (1, 1), ((1, 1), (1, 1)))


@jax.custom_vjp
def _phase_conv(x: Array, k: Array) -> Array:
    return _conv2x2_pad1(x, k)


def _phase_conv_fwd(x, k):
    return _conv2x2_pad1(x, k), (x, k)


def _phase_conv_bwd(res, dz):
    x, k = res
    dx = jax.vjp(lambda x: _conv2x2_pad1(x, k), x)[1](dz)[0]
    # Kernel gradient as one matmul over the 2×2 input patches: XLA:CPU's own filter-gradient
    # convolution for this shape was 10-100x slower than the forward.
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = _im2col(xp, (2, 2), (1, 1), dz.shape[1:3])  # (B, H + 1, W + 1, 4·Ci)
    dk = jnp.einsum("bhwk,bhwo->ko", patches, dz).reshape(k.shape)
    return dx, dk.astype(k.dtype)


_phase_conv.defvjp(_phase_conv_fwd, _phase_conv_bwd)


def upsample_conv3x3(x: Array, w: Array, method: str = "auto") -> Array:
    """``conv3x3(upsample_nearest2x(x), w)`` (padding 1, no bias), computed directly or by phases.

    The phase form (``method="phases"``) runs four 2×2 convolutions on the *input* instead of a 3×3
    one on the 4× larger upsampled image: 16 instead of 36 multiply-adds per input pixel and
    channel pair, with the same result up to float32 rounding (the merged taps are summed before
    the multiply; max relative difference ~1e-6). ``"auto"`` uses it on CPU for inputs of at least
    8×8, where it measured 1.4-2.7x faster forward + backward on 2 cores (G_NET's upsample2,
    8×8×256 -> 16×16×256: 17 -> 10 ms); below that the direct form wins (upsample1, 4×4×512:
    direct 14 ms, phases 50 ms); elsewhere (GPU/TPU, where cuDNN/XLA pick their own algorithms)
    the direct form. The direct form is :func:`conv2d` on the upsampled image, so on CPU its
    gradients take the matmul path for small outputs with large kernels (upsample1: 23 -> 14 ms;
    XLA had fused the upsampling's gradient into a slow YNNPACK convolution).

    Args:
        x: (B, H, W, Ci).
        w: (3, 3, Ci, Co) kernel (HWIO), in ``x``'s dtype.
        method: ``"auto"``, ``"direct"`` or ``"phases"``.

    Returns:
        (B, 2H, 2W, Co).
    """
    b, h, wd, _ = x.shape
    if method == "auto":
        big = min(h, wd) >= _PHASE_MIN_SIZE
        method = "phases" if big and jax.default_backend() == "cpu" else "direct"
    if method == "direct":
        return conv2d(upsample_nearest2x(x), w, (1, 1), ((1, 1), (1, 1)))
    if method != "phases":
        raise ValueError(f"method must be 'auto', 'direct' or 'phases', got {method!r}")
    co = w.shape[-1]
    z = _phase_conv(x, _phase_kernel(w))  # (B, H + 1, W + 1, 4·Co); position p reads rows p-1, p
    z = z.reshape(b, h + 1, wd + 1, 2, 2, co)
    # Phase (a, b) of output pixel (i, j) sits at z[i + a, j + b, a, b].
    return _interleave_phases([[z[:, a : a + h, c : c + wd, a, c] for c in (0, 1)] for a in (0, 1)])


def _interleave_phases(phases: list[list[Array]]) -> Array:
    """``phases[a][b]`` (B, H, W, C) -> (B, s_h·H, s_w·W, C) with it at rows ≡ a, columns ≡ b.

    The inverse of :func:`_space_to_depth` for phases given as separate arrays.
    """
    rows = [jnp.stack(row, axis=3) for row in phases]  # each (B, H, W, s_w, C)
    x = jnp.stack(rows, axis=2)  # (B, H, s_h, W, s_w, C)
    b, h, sh, w, sw, c = x.shape
    return x.reshape(b, h * sh, w * sw, c)


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


# --- convolution whose gradients are matmuls on small feature maps ------------------------------

_MATMUL_GRAD_MAX_OUT = 64
"""Largest output ``H·W`` for which ``conv2d(..., grad="auto")`` computes its gradients as matmuls."""
_MATMUL_GRAD_MIN_KERNEL = 2**20
"""Smallest kernel (elements) for that: the measured wins were 3.5M-33M-element kernels, while the
shapes demo's small discriminator got slower and compiled 6 s longer with every small map included."""


def _xla_forward_conv(grads):
    """A conv with XLA's forward whose ``(dx, dw)`` are ``grads(strides, padding, x, w, dz)``."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def conv(x: Array, w: Array, strides, padding) -> Array:
        return _conv_nhwc(x, w, strides, padding)

    def fwd(x, w, strides, padding):
        return _conv_nhwc(x, w, strides, padding), (x, w)

    def bwd(strides, padding, res, dz):
        return grads(strides, padding, *res, dz)

    conv.defvjp(fwd, bwd)
    return conv


def _matmul_grads(strides, padding, x, w, dz):
    """(dx, dw) of a convolution as im2col/col2im matmuls."""
    kh, kw, ci, co = w.shape
    b, ho, wo, _ = dz.shape
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    cols = _im2col(xp, (kh, kw), strides, (ho, wo))  # (B, Ho, Wo, kh·kw·Ci)
    dw = jnp.einsum("bhwk,bhwo->ko", cols, dz).reshape(w.shape)
    dcols = jnp.einsum("bhwo,ko->bhwk", dz, w.reshape(kh * kw * ci, co))
    dcols = dcols.reshape(b, ho, wo, kh * kw, ci)
    dxp = jnp.zeros(xp.shape, dz.dtype)
    for t, idx in enumerate(_tap_indices((kh, kw), strides, (ho, wo))):  # col2im: add taps back
        dxp = dxp.at[idx].add(dcols[:, :, :, t])
    (pt, _), (pl, _) = padding
    dx = dxp[:, pt : pt + x.shape[1], pl : pl + x.shape[2]]
    return dx.astype(x.dtype), dw.astype(w.dtype)


_conv_matmul_grad = _xla_forward_conv(_matmul_grads)


# --- strided convolution whose gradients are stride-1 convolutions on space-to-depth inputs -------


def _space_to_depth(x: Array, s: int) -> Array:
    """(B, s·H, s·W, C) -> (B, H, W, s·s·C), channels ordered (row phase, column phase, c)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // s, w // s, s * s * c)


def _conv_s2d(x: Array, w: Array, strides, padding) -> Array:
    """A stride-``s`` convolution as a stride-1 one on space-to-depth input and kernel.

    Output pixel ``i`` of a ``k×k`` stride-``s`` conv reads padded rows ``s·i .. s·i + k - 1``, which
    are rows ``i .. i + k/s - 1`` of the padded input folded ``s×s`` into channels; kernel tap
    ``s·p + a`` becomes tap ``p`` of phase ``a``. Needs ``k % s == 0``. Extra zero rows/columns
    that make the padded size divisible by ``s`` only reach outputs past the end, which are cropped.
    """
    (kh, kw, ci, co), (s, _) = w.shape, strides
    (pt, pb), (pl, pr) = padding
    hp, wp = x.shape[1] + pt + pb, x.shape[2] + pl + pr
    ho, wo = (hp - kh) // s + 1, (wp - kw) // s + 1
    xp = jnp.pad(x, ((0, 0), (pt, pb + (-hp) % s), (pl, pr + (-wp) % s), (0, 0)))
    ws = w.reshape(kh // s, s, kw // s, s, ci, co).transpose(0, 2, 1, 3, 4, 5)
    ws = ws.reshape(kh // s, kw // s, s * s * ci, co)  # taps (p, q), channels (a, b, c)
    return _conv_nhwc(_space_to_depth(xp, s), ws, (1, 1), ((0, 0), (0, 0)))[:, :ho, :wo]


def _s2d_grads(strides, padding, x, w, dz):
    """(dx, dw) of a strided convolution through its space-to-depth form (``_conv_s2d``)."""
    return jax.vjp(lambda x, w: _conv_s2d(x, w, strides, padding), x, w)[1](dz)


_conv_s2d_grad = _xla_forward_conv(_s2d_grads)


def conv2d(
    x: Array,
    w: Array,
    strides: tuple[int, int] = (1, 1),
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
    grad: str = "auto",
) -> Array:
    """NHWC/HWIO convolution (XLA's forward) with a choice of how its gradients are computed.

    ``grad="matmul"`` computes both gradients as matmuls over the ``k_h·k_w`` input patches (im2col):
    the kernel gradient as ``patchesᵀ · dz`` and the input gradient as ``dz · Wᵀ`` scattered back
    (col2im). On small feature maps with many channels (the discriminators' deepest layers, e.g.
    4×4 stride 2 from 8×8×1024 to 4×4×2048, or 3×3 convs on 4×4×2048) XLA:CPU's transposed
    convolutions ran at a fraction of its forward speed (input gradient 5x the forward) and this
    was 1.5-2.4x faster forward + backward on 2 cores; on large maps XLA's own gradient wins and
    the patches would cost memory. ``"auto"`` = ``"matmul"`` on CPU when the output has at most 64
    pixels (8×8) and the kernel at least 2^20 elements, else ``"xla"``. Same values; the gradients
    differ by float32 summation order.

    ``grad="s2d"`` (strided convolutions whose kernel size is a multiple of the stride, e.g. the
    discriminators' 4×4 stride-2 downsampling convs) keeps XLA's strided forward and computes both
    gradients as the gradients of the equal stride-1 convolution on the space-to-depth input (the
    input folded ``s×s`` into channels, the kernel likewise; ``_conv_s2d``). XLA:CPU's transposed
    convolutions for strides > 1 were 1.5-2.5x slower than those of the stride-1 form (4×4 stride 2
    on 4×128²×64 -> 128 channels: input gradient 140 -> 57 ms, kernel gradient 128 -> 50 ms on 2
    cores). ``"auto"`` = ``"s2d"`` on CPU for such convolutions when ``"matmul"`` does not apply.

    Args:
        x: (B, H, W, Ci).
        w: (kh, kw, Ci, Co).
        strides: (sh, sw).
        padding: ((top, bottom), (left, right)).
        grad: ``"auto"``, ``"xla"``, ``"matmul"`` or ``"s2d"``.

    Returns:
        (B, Ho, Wo, Co).
    """
    strides = tuple(strides)
    padding = tuple(tuple(p) for p in padding)
    if grad == "auto":
        ho = (x.shape[1] + sum(padding[0]) - w.shape[0]) // strides[0] + 1
        wo = (x.shape[2] + sum(padding[1]) - w.shape[1]) // strides[1] + 1
        small = ho * wo <= _MATMUL_GRAD_MAX_OUT and w.size >= _MATMUL_GRAD_MIN_KERNEL
        foldable = _s2d_applies(w.shape, strides)
        if jax.default_backend() != "cpu":
            grad = "xla"
        else:
            grad = "matmul" if small else "s2d" if foldable else "xla"
    if grad == "xla":
        return _conv_nhwc(x, w, strides, padding)
    if grad == "matmul":
        return _conv_matmul_grad(x, w, strides, padding)
    if grad == "s2d":
        if not _s2d_applies(w.shape, strides):
            raise ValueError(
                f"grad='s2d' needs equal strides > 1 that divide the kernel size; got kernel "
                f"{w.shape[:2]} and strides {strides}"
            )
        return _conv_s2d_grad(x, w, strides, padding)
    raise ValueError(f"grad must be 'auto', 'xla', 'matmul' or 's2d', got {grad!r}")


def _s2d_applies(w_shape, strides) -> bool:
    """Whether ``grad="s2d"`` can fold this convolution: equal strides > 1 dividing the kernel."""
    (kh, kw), (sh, sw) = w_shape[:2], strides
    return sh == sw > 1 and kh % sh == 0 and kw % sw == 0


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
    ``select_and_scatter``, which took ~140 ms for Inception's first pool alone (4×147²×64) on
    2 CPU cores; the gradient here is k_h·k_w strided compare/select/pad passes, about 10× faster.

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
    return _max_pool_valid(x, tuple(window), tuple(strides))


def _window_slices(x: Array, window, strides, out_hw):
    """Yields ``((i, j), x[:, i::s_h, j::s_w][:, :H_out, :W_out])`` for every window offset."""
    for t, idx in enumerate(_tap_indices(window, strides, out_hw)):
        yield divmod(t, window[1]), x[idx]  # strided slices (lax.slice), no gather


def _pool_out_hw(x: Array, window, strides) -> tuple[int, int]:
    return tuple((x.shape[1 + a] - window[a]) // strides[a] + 1 for a in range(2))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool_valid(x: Array, window: tuple[int, int], strides: tuple[int, int]) -> Array:
    # A max over k_h*k_w strided slices: one fused elementwise loop, where XLA:CPU's
    # reduce-window took 3-7 ms per Inception pool.
    out = None
    for _, xs in _window_slices(x, window, strides, _pool_out_hw(x, window, strides)):
        out = xs if out is None else jnp.maximum(out, xs)
    return out


def _max_pool_fwd(x, window, strides):
    out = _max_pool_valid(x, window, strides)
    return out, (x, out)


def _max_pool_bwd(window, strides, res, g):
    x, out = res
    b, h, w, c = x.shape
    ho, wo = out.shape[1:3]
    sh, sw = strides
    # dx is assembled from its s_h·s_w stride phases (rows ≡ p_h mod s_h, columns ≡ p_w mod s_w),
    # each ceil(H/s_h) × ceil(W/s_w): window tap (i, j) lands in phase (i mod s_h, j mod s_w),
    # shifted by (i div s_h, j div s_w), so every tap is a small shifted pad of its (B, Ho, Wo, C)
    # contribution instead of an interior-padded pad to the full input size. Inception's
    # stride-2 pools: ~3x less to write than k_h·k_w full-size pads (Mixed_7a's 9 pads of
    # 4×17²×768 took 17 ms on 2 cores). Each element of dx sums the same terms in the same (tap)
    # order as a sum of full-size pads would, so the values are the same.
    hp, wp = -(-h // sh), -(-w // sw)
    taken = jnp.zeros(out.shape, bool)
    zero = jnp.zeros((), g.dtype)
    phases: dict[tuple[int, int], Array] = {}
    # Row-major window order: the first maximum wins, as in PyTorch and XLA's select_and_scatter.
    for (i, j), xs in _window_slices(x, window, strides, (ho, wo)):  # xs: (B, Ho, Wo, C)
        sel = (xs == out) & ~taken
        taken = taken | sel
        contrib = jnp.where(sel, g, zero)
        oi, oj = i // sh, j // sw
        placed = jax.lax.pad(  # (B, hp, wp, C), phase (i mod s_h, j mod s_w)
            contrib,
            zero,
            ((0, 0, 0), (oi, hp - oi - ho, 0), (oj, wp - oj - wo, 0), (0, 0, 0)),
        )
        key = (i % sh, j % sw)
        phases[key] = placed + phases[key] if key in phases else placed
    none = jnp.zeros((b, hp, wp, c), g.dtype)  # a phase no tap reaches (stride > window)
    dx = _interleave_phases([[phases.get((pi, pj), none) for pj in range(sw)] for pi in range(sh)])
    return (dx[:, :h, :w],)


_max_pool_valid.defvjp(_max_pool_fwd, _max_pool_bwd)


def avg_pool3x3_same(x: Array, count_include_pad: bool) -> Array:
    """3x3 average pool, stride 1, padding 1 (NHWC), as shifted-slice sums.

    Equals ``nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=...)`` up to float
    summation order. The slices fuse into single elementwise loops; XLA:CPU's reduce-window took
    3-7 ms per Inception pool (forward and again backward). The pool is a symmetric box filter
    followed by a division, so its gradient is the same box filter of ``dy / counts``
    (``custom_vjp``): one more shifted-slice sum, where differentiating the slices gives a chain
    of pads (Inception's avg-pool gradients: ~30 ms of pads per G-loss step on 2 cores).

    Args:
        x: (B, H, W, C).
        count_include_pad: divide by 9 everywhere (torch's default) or by the number of real
            pixels in each window.

    Returns:
        (B, H, W, C).
    """
    return _avg_pool3x3(x, count_include_pad)


def _box3x3(x: Array) -> Array:
    """Sum over each 3x3 window of the zero-padded ``x`` (B, H, W, C) -> (B, H, W, C)."""
    _, h, w, _ = x.shape
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = p[:, 0:h] + p[:, 1 : h + 1] + p[:, 2 : h + 2]  # (B, H, W+2, C)
    return rows[:, :, 0:w] + rows[:, :, 1 : w + 1] + rows[:, :, 2 : w + 2]  # (B, H, W, C)


def _box_counts(h: int, w: int, count_include_pad: bool, dtype) -> Array:
    """The divisor of each output pixel, broadcastable to (B, H, W, C)."""
    if count_include_pad:
        return jnp.asarray(9.0, dtype)
    ones = np.pad(np.ones((h, w), np.float32), 1)
    counts = sum(ones[i : i + h, j : j + w] for i in range(3) for j in range(3))  # (H, W)
    return jnp.asarray(counts[None, :, :, None], dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _avg_pool3x3(x: Array, count_include_pad: bool) -> Array:
    return _box3x3(x) / _box_counts(x.shape[1], x.shape[2], count_include_pad, x.dtype)


def _avg_pool3x3_fwd(x, count_include_pad):
    return _avg_pool3x3(x, count_include_pad), None


def _avg_pool3x3_bwd(count_include_pad, _, g):
    # y = box(x) / n and box is its own transpose: dx = box(g / n).
    return (_box3x3(g / _box_counts(g.shape[1], g.shape[2], count_include_pad, g.dtype)),)


_avg_pool3x3.defvjp(_avg_pool3x3_fwd, _avg_pool3x3_bwd)
