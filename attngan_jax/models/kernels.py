"""Custom-gradient kernels behind :mod:`attngan_jax.models.layers` (``jax.custom_vjp``).

They exist because several of XLA:CPU's standard lowerings were slow for the shapes AttnGAN
uses: the max-pool gradient (``select_and_scatter``), the pools' ``reduce-window``, and the
transposed convolutions that differentiate small-map/large-kernel and strided convolutions (much
slower than the matching forward). Each kernel here computes the same function with XLA's own
forward or with strided slices that fuse into elementwise loops, and its gradient in a form that
XLA:CPU runs faster: matmuls over input patches (im2col/col2im), stride-1 convolutions on
space-to-depth inputs, phase-wise pads, box filters. Values are equal to the standard ops (the
pools' max and gradient exactly; sums up to float32 summation order).

Which kernel a layer uses is decided in :mod:`~attngan_jax.models.layers` (only on CPU, by shape);
the measurements behind those choices are in ``docs/performance.md``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# --- convolution helpers --------------------------------------------------------------------------


def conv_nhwc(x: Array, w: Array, strides, padding) -> Array:
    """XLA's NHWC/HWIO convolution (no bias)."""
    return jax.lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def conv_out_hw(x_shape, kernel_hw, strides, padding) -> tuple[int, int]:
    """(Ho, Wo) of a convolution of an NHWC ``x_shape`` with explicit ``padding``."""
    return tuple(
        (x_shape[1 + a] + sum(padding[a]) - kernel_hw[a]) // strides[a] + 1 for a in range(2)
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
    return conv_nhwc(x, k, (1, 1), ((1, 1), (1, 1)))


@jax.custom_vjp
def _phase_conv(x: Array, k: Array) -> Array:
    return _conv2x2_pad1(x, k)


def _phase_conv_fwd(x, k):
    return _conv2x2_pad1(x, k), (x, k)


def _phase_conv_bwd(res, dz):
    x, k = res
    dx = jax.vjp(lambda x: _conv2x2_pad1(x, k), x)[1](dz)[0]
    # Kernel gradient as one matmul over the 2×2 input patches: XLA:CPU's own filter-gradient
    # convolution for this shape was far slower than the forward.
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = _im2col(xp, (2, 2), (1, 1), dz.shape[1:3])  # (B, H + 1, W + 1, 4·Ci)
    dk = jnp.einsum("bhwk,bhwo->ko", patches, dz).reshape(k.shape)
    return dx, dk.astype(k.dtype)


_phase_conv.defvjp(_phase_conv_fwd, _phase_conv_bwd)


def upsample_conv3x3_phases(x: Array, w: Array) -> Array:
    """``conv3x3(upsample_nearest2x(x), w)`` (padding 1, no bias) as four 2×2 convs on ``x``.

    The merged taps (:func:`_phase_kernel`) are summed before the multiply, so the result equals
    the direct form up to float32 rounding. The kernel gradient is one matmul over the 2×2 input
    patches.

    Args:
        x: (B, H, W, Ci).
        w: (3, 3, Ci, Co) kernel (HWIO), in ``x``'s dtype.

    Returns:
        (B, 2H, 2W, Co).
    """
    b, h, wd, _ = x.shape
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


# --- convolution whose gradients are matmuls on small feature maps --------------------------------


def _xla_forward_conv(grads):
    """A conv with XLA's forward whose ``(dx, dw)`` are ``grads(strides, padding, x, w, dz)``."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def conv(x: Array, w: Array, strides, padding) -> Array:
        return conv_nhwc(x, w, strides, padding)

    def fwd(x, w, strides, padding):
        return conv_nhwc(x, w, strides, padding), (x, w)

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


conv_matmul_grad = _xla_forward_conv(_matmul_grads)
"""``conv_matmul_grad(x, w, strides, padding)``: XLA's forward, gradients as im2col/col2im
matmuls (the kernel gradient ``patchesᵀ · dz``, the input gradient ``dz · Wᵀ`` scattered back)."""


# --- convolution as one matmul over its patches (forward and gradients) ---------------------------


def conv_im2col(x: Array, w: Array, strides, padding) -> Array:
    """A convolution as one matmul over its input patches; its gradients are JAX's of that.

    The forward is ``im2col(pad(x)) · W`` (B·Ho·Wo rows, kh·kw·Ci columns), so the kernel gradient
    is ``patchesᵀ · dz`` and the input gradient ``dz · Wᵀ`` added back tap by tap. For padded
    convolutions on tiny outputs (2×2 and smaller) XLA:CPU's own convolution ran 10-20x slower
    than this in both directions (docs/performance.md).

    Args:
        x: (B, H, W, Ci).
        w: (kh, kw, Ci, Co).
        strides: (sh, sw).
        padding: ((top, bottom), (left, right)).

    Returns:
        (B, Ho, Wo, Co), equal to :func:`conv_nhwc` up to float32 summation order.
    """
    kh, kw, ci, co = w.shape
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    out_hw = conv_out_hw(x.shape, (kh, kw), strides, padding)
    cols = _im2col(xp, (kh, kw), strides, out_hw)  # (B, Ho, Wo, kh·kw·Ci)
    return jnp.einsum("bhwk,ko->bhwo", cols, w.reshape(kh * kw * ci, co))


# --- strided convolution whose gradients are stride-1 convolutions on space-to-depth inputs -------


def _space_to_depth(x: Array, s: int) -> Array:
    """(B, s·H, s·W, C) -> (B, H, W, s·s·C), channels ordered (row phase, column phase, c)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // s, w // s, s * s * c)


def conv_s2d(x: Array, w: Array, strides, padding) -> Array:
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
    return conv_nhwc(_space_to_depth(xp, s), ws, (1, 1), ((0, 0), (0, 0)))[:, :ho, :wo]


def _s2d_grads(strides, padding, x, w, dz):
    """(dx, dw) of a strided convolution through its space-to-depth form (:func:`conv_s2d`)."""
    return jax.vjp(lambda x, w: conv_s2d(x, w, strides, padding), x, w)[1](dz)


conv_s2d_grad = _xla_forward_conv(_s2d_grads)
"""``conv_s2d_grad(x, w, strides, padding)``: XLA's strided forward, gradients those of the equal
stride-1 convolution :func:`conv_s2d` (needs :func:`s2d_applies`)."""


def s2d_applies(w_shape, strides) -> bool:
    """Whether :func:`conv_s2d` can fold this convolution: equal strides > 1 dividing the kernel."""
    (kh, kw), (sh, sw) = w_shape[:2], strides
    return sh == sw > 1 and kh % sh == 0 and kw % sw == 0


# --- max pool without select_and_scatter ----------------------------------------------------------


def _window_slices(x: Array, window, strides, out_hw):
    """Yields ``((i, j), x[:, i::s_h, j::s_w][:, :H_out, :W_out])`` for every window offset."""
    for t, idx in enumerate(_tap_indices(window, strides, out_hw)):
        yield divmod(t, window[1]), x[idx]  # strided slices (lax.slice), no gather


def _pool_out_hw(x: Array, window, strides) -> tuple[int, int]:
    return tuple((x.shape[1 + a] - window[a]) // strides[a] + 1 for a in range(2))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool_valid(x: Array, window: tuple[int, int], strides: tuple[int, int]) -> Array:
    """Unpadded max pool (NHWC) whose gradient goes to the first maximum of each window.

    Args:
        x: (B, H, W, C), already padded (with -inf) if the pool pads.
        window: ``(k_h, k_w)``.
        strides: ``(s_h, s_w)``.

    Returns:
        (B, H_out, W_out, C).
    """
    # A max over k_h*k_w strided slices: one fused elementwise loop, faster than XLA:CPU's
    # reduce-window.
    out = None
    for _, xs in _window_slices(x, window, strides, _pool_out_hw(x, window, strides)):
        out = xs if out is None else jnp.maximum(out, xs)
    return out


def _max_pool_fwd(x, window, strides):
    out = max_pool_valid(x, window, strides)
    return out, (x, out)


def _max_pool_bwd(window, strides, res, g):
    x, out = res
    b, h, w, c = x.shape
    ho, wo = out.shape[1:3]
    sh, sw = strides
    # dx is assembled from its s_h·s_w stride phases (rows ≡ p_h mod s_h, columns ≡ p_w mod s_w),
    # each ceil(H/s_h) × ceil(W/s_w): window tap (i, j) lands in phase (i mod s_h, j mod s_w),
    # shifted by (i div s_h, j div s_w), so every tap is a small shifted pad of its (B, Ho, Wo, C)
    # contribution instead of an interior-padded pad to the full input size: for strided pools
    # (Inception's stride-2 ones) a fraction of the bytes to write. Each element of dx sums the
    # same terms in the same (tap) order as a sum of full-size pads would, so the values are the
    # same.
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


max_pool_valid.defvjp(_max_pool_fwd, _max_pool_bwd)


# --- 3×3 average pool as shifted-slice sums, its gradient a box filter ----------------------------


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
def avg_pool3x3(x: Array, count_include_pad: bool) -> Array:
    """3x3 average pool, stride 1, padding 1 (NHWC); its gradient is the box filter of dy / counts.

    Args:
        x: (B, H, W, C).
        count_include_pad: divide by 9 everywhere or by the number of real pixels in each window.

    Returns:
        (B, H, W, C).
    """
    return _box3x3(x) / _box_counts(x.shape[1], x.shape[2], count_include_pad, x.dtype)


def _avg_pool3x3_fwd(x, count_include_pad):
    return avg_pool3x3(x, count_include_pad), None


def _avg_pool3x3_bwd(count_include_pad, _, g):
    # y = box(x) / n and box is its own transpose: dx = box(g / n).
    return (_box3x3(g / _box_counts(g.shape[1], g.shape[2], count_include_pad, g.dtype)),)


avg_pool3x3.defvjp(_avg_pool3x3_fwd, _avg_pool3x3_bwd)
