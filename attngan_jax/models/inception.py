"""Inception-v3 (torchvision block structure, NHWC) and its two evaluation heads.

Three users share one trunk, :class:`InceptionTrunk`:

* the DAMSM image encoder (``image_encoder.CNNEncoder``): Mixed_6e features + pooled Mixed_7c;
* the Inception Score classifier :class:`InceptionClassifier` (torchvision ``inception_v3``
  logits; 1000 classes, or 1008 for the 2015 TF network with ``fid_variant=True``);
* the FID feature extractor :class:`FIDInceptionV3` (pytorch-fid ``InceptionV3``, blocks 2 and 3).

Module names mirror the torchvision state-dict keys (``Mixed_6e/branch7x7dbl_3/conv``, ``.../bn``),
so the converters in ``attngan_jax.convert.inception`` are a mechanical key rename. Reference §4
lists every block; :data:`TRUNK_LAYOUT` lists the 94 ``BasicConv2d`` units in torchvision order.

``fid_variant=True`` reproduces pytorch-fid's patched blocks (TensorFlow's 2015 graph): the 3x3
average pools of Mixed_5b-5d, 6b-6e and 7b exclude the zero padding from the divisor
(``count_include_pad=False``) and Mixed_7c's pool branch is a 3x3 *max* pool (stride 1, pad 1).

Dropout before torchvision's ``fc`` is not implemented (the classifier is only used for evaluation).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from attngan_jax.models.layers import BatchNorm, Dtype, avg_pool3x3_same, conv2d, max_pool
from attngan_jax.models.resize import resize_bilinear

Array = jax.Array

# BasicConv2d units per block, torchvision order (the converter iterates over this).
_A = ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2")
_A = (*_A, "branch3x3dbl_3", "branch_pool")
_B = ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")
_C = (
    "branch1x1",
    *(f"branch7x7_{i}" for i in (1, 2, 3)),
    *(f"branch7x7dbl_{i}" for i in range(1, 6)),
)
_C = (*_C, "branch_pool")
_D = ("branch3x3_1", "branch3x3_2", *(f"branch7x7x3_{i}" for i in (1, 2, 3, 4)))
_E = (
    "branch1x1",
    "branch3x3_1",
    "branch3x3_2a",
    "branch3x3_2b",
    "branch3x3dbl_1",
    "branch3x3dbl_2",
)
_E = (*_E, "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool")
TRUNK_LAYOUT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Conv2d_1a_3x3", ()),
    ("Conv2d_2a_3x3", ()),
    ("Conv2d_2b_3x3", ()),
    ("Conv2d_3b_1x1", ()),
    ("Conv2d_4a_3x3", ()),
    *((n, _A) for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d")),
    ("Mixed_6a", _B),
    *((n, _C) for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")),
    ("Mixed_7a", _D),
    *((n, _E) for n in ("Mixed_7b", "Mixed_7c")),
)
"""(block, BasicConv2d names inside it; empty for a stem conv that is itself a BasicConv2d)."""


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class _ConvKernel(nn.Module):
    """The ``kernel`` parameter of a bias-free ``nn.Conv`` (same name, shape and initialiser).

    Attributes:
        features: output channels.
        kernel_size: (kh, kw).
    """

    features: int
    kernel_size: tuple[int, int]

    @nn.compact
    def __call__(self, in_features: int) -> Array:
        """-> (kh, kw, in_features, features) float32."""
        shape = (*self.kernel_size, in_features, self.features)
        init = nn.initializers.truncated_normal(0.1)  # torchvision's init
        return self.param("kernel", init, shape, jnp.float32)


class BasicConv2d(nn.Module):
    """torchvision ``BasicConv2d``: Conv2d (no bias) -> BatchNorm (eps 1e-3) -> ReLU.

    Besides ``__call__`` it exposes its two halves, :meth:`convolve` and :meth:`activate`, so that
    a block can move a linear op between them (the pool branches, :func:`_conv_then_avg_pool`).
    Parameters are ``conv/kernel`` (as ``nn.Conv``'s) and ``bn/...``.

    Attributes:
        features: output channels.
        kernel: (kh, kw) or int.
        stride: stride in both axes.
        padding: torch padding (ph, pw) or int, applied symmetrically.
        dtype: computation dtype.
        grad: :func:`attngan_jax.models.layers.conv2d`'s method; ``"xla"`` (Inception-v3, whose
            measured layers are fastest there), ``"auto"`` for :class:`SmallTrunk`'s tiny maps.
    """

    features: int
    kernel: int | tuple[int, int]
    stride: int = 1
    padding: int | tuple[int, int] = 0
    dtype: Dtype | None = None
    grad: str = "xla"

    def setup(self):
        """Declares the ``conv`` kernel and the ``bn`` BatchNorm (torchvision's names)."""
        self.conv = _ConvKernel(self.features, _pair(self.kernel))
        self.bn = BatchNorm(epsilon=1e-3, dtype=self.dtype)

    def __call__(self, x: Array, train: bool) -> Array:
        """(B, H, W, C_in) -> (B, H', W', features)."""
        return self.activate(self.convolve(x), train)

    def convolve(self, x: Array) -> Array:
        """The convolution alone: (B, H, W, C_in) -> (B, H', W', features)."""
        kernel = self.conv(x.shape[-1])
        dtype = self.dtype or jnp.result_type(x, kernel)
        ph, pw = _pair(self.padding)
        s = (self.stride, self.stride)
        return conv2d(x.astype(dtype), kernel.astype(dtype), s, ((ph, ph), (pw, pw)), self.grad)

    def activate(self, y: Array, train: bool) -> Array:
        """BatchNorm and ReLU of a convolution output (B, H', W', features)."""
        return nn.relu(self.bn(y, train))


def _conv_then_avg_pool(unit: BasicConv2d, x: Array, include_pad: bool, train: bool) -> Array:
    """A pool branch, ``unit(avg_pool3x3(x))``, with the 1x1 convolution before the pool.

    The 3x3 average pool (stride 1, padding 1, torch ``count_include_pad`` as given) and the 1x1
    convolution are both linear and act on different axes (the pool's divisor depends on the pixel
    only), so they commute: the pool then runs on the convolution's 32-192 channels instead of the
    block input's 192-2048, forward and in the input gradient. Equal up to float summation order.

    Args:
        unit: the branch's 1x1 stride-1 :class:`BasicConv2d` (``branch_pool``).
        x: (B, H, W, C) block input.
        include_pad: torch ``count_include_pad``.
        train: BatchNorm mode.

    Returns:
        (B, H, W, unit.features).
    """
    return unit.activate(avg_pool3x3_same(unit.convolve(x), count_include_pad=include_pad), train)


def _max_pool3s2(x: Array) -> Array:
    """3x3 max pool, stride 2, no padding (floor mode); the fast-gradient :func:`max_pool`."""
    return max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1(pool_features)."""

    pool_features: int
    fid_variant: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """(B, 35, 35, C) -> (B, 35, 35, 224 + pool_features)."""
        c = lambda f, k, p, n: BasicConv2d(f, k, 1, p, self.dtype, name=n)  # noqa: E731
        b1 = c(64, 1, 0, "branch1x1")(x, train)
        b5 = c(48, 1, 0, "branch5x5_1")(x, train)
        b5 = c(64, 5, 2, "branch5x5_2")(b5, train)
        b3 = c(64, 1, 0, "branch3x3dbl_1")(x, train)
        b3 = c(96, 3, 1, "branch3x3dbl_2")(b3, train)
        b3 = c(96, 3, 1, "branch3x3dbl_3")(b3, train)
        pool = c(self.pool_features, 1, 0, "branch_pool")
        bp = _conv_then_avg_pool(pool, x, not self.fid_variant, train)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """(B, 35, 35, 288) -> (B, 17, 17, 768)."""
        b3 = BasicConv2d(384, 3, 2, 0, self.dtype, name="branch3x3")(x, train)
        bd = BasicConv2d(64, 1, 1, 0, self.dtype, name="branch3x3dbl_1")(x, train)
        bd = BasicConv2d(96, 3, 1, 1, self.dtype, name="branch3x3dbl_2")(bd, train)
        bd = BasicConv2d(96, 3, 2, 0, self.dtype, name="branch3x3dbl_3")(bd, train)
        return jnp.concatenate([b3, bd, _max_pool3s2(x)], axis=-1)


class InceptionC(nn.Module):
    """Mixed_6b-6e: 1x1 | factorised 7x7 | double factorised 7x7 | avgpool-1x1 (c7 inner width)."""

    channels_7x7: int
    fid_variant: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """(B, 17, 17, 768) -> (B, 17, 17, 768)."""
        c7 = self.channels_7x7
        c = lambda f, k, p, n: BasicConv2d(f, k, 1, p, self.dtype, name=n)  # noqa: E731
        b1 = c(192, 1, 0, "branch1x1")(x, train)
        b7 = c(c7, 1, 0, "branch7x7_1")(x, train)
        b7 = c(c7, (1, 7), (0, 3), "branch7x7_2")(b7, train)
        b7 = c(192, (7, 1), (3, 0), "branch7x7_3")(b7, train)
        bd = c(c7, 1, 0, "branch7x7dbl_1")(x, train)
        bd = c(c7, (7, 1), (3, 0), "branch7x7dbl_2")(bd, train)
        bd = c(c7, (1, 7), (0, 3), "branch7x7dbl_3")(bd, train)
        bd = c(c7, (7, 1), (3, 0), "branch7x7dbl_4")(bd, train)
        bd = c(192, (1, 7), (0, 3), "branch7x7dbl_5")(bd, train)
        pool = c(192, 1, 0, "branch_pool")
        bp = _conv_then_avg_pool(pool, x, not self.fid_variant, train)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """(B, 17, 17, 768) -> (B, 8, 8, 1280)."""
        c = lambda f, k, s, p, n: BasicConv2d(f, k, s, p, self.dtype, name=n)  # noqa: E731
        b3 = c(192, 1, 1, 0, "branch3x3_1")(x, train)
        b3 = c(320, 3, 2, 0, "branch3x3_2")(b3, train)
        b7 = c(192, 1, 1, 0, "branch7x7x3_1")(x, train)
        b7 = c(192, (1, 7), 1, (0, 3), "branch7x7x3_2")(b7, train)
        b7 = c(192, (7, 1), 1, (3, 0), "branch7x7x3_3")(b7, train)
        b7 = c(192, 3, 2, 0, "branch7x7x3_4")(b7, train)
        return jnp.concatenate([b3, b7, _max_pool3s2(x)], axis=-1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    Attributes:
        pool: ``"avg"`` (torchvision; count_include_pad=True), ``"avg_exclude_pad"`` (pytorch-fid
            Mixed_7b) or ``"max"`` (pytorch-fid Mixed_7c).
        dtype: computation dtype.
    """

    pool: str = "avg"
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """(B, 8, 8, C) -> (B, 8, 8, 2048)."""
        c = lambda f, k, p, n: BasicConv2d(f, k, 1, p, self.dtype, name=n)  # noqa: E731
        if self.pool not in ("avg", "avg_exclude_pad", "max"):
            raise ValueError(f"unknown pool {self.pool!r}")
        b1 = c(320, 1, 0, "branch1x1")(x, train)
        b3 = c(384, 1, 0, "branch3x3_1")(x, train)
        b3 = jnp.concatenate(
            [
                c(384, (1, 3), (0, 1), "branch3x3_2a")(b3, train),
                c(384, (3, 1), (1, 0), "branch3x3_2b")(b3, train),
            ],
            axis=-1,
        )
        bd = c(448, 1, 0, "branch3x3dbl_1")(x, train)
        bd = c(384, 3, 1, "branch3x3dbl_2")(bd, train)
        bd = jnp.concatenate(
            [
                c(384, (1, 3), (0, 1), "branch3x3dbl_3a")(bd, train),
                c(384, (3, 1), (1, 0), "branch3x3dbl_3b")(bd, train),
            ],
            axis=-1,
        )
        pool = c(192, 1, 0, "branch_pool")
        if self.pool == "max":
            bp = pool(max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1))), train)
        else:
            bp = _conv_then_avg_pool(pool, x, self.pool == "avg", train)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionTrunk(nn.Module):
    """Inception-v3 from the image to Mixed_7c (no aux head, no fc).

    Attributes:
        fid_variant: pytorch-fid's FIDInceptionA/C/E pools (see the module docstring).
        tf_slim_pools: TF-slim's pools (the StackGAN CUB Inception): every padded 3x3 average
            pool, Mixed_7c's included, excludes the padding from its divisor (TF ``SAME`` avg pool).
        dtype: computation dtype.
    """

    fid_variant: bool = False
    dtype: Dtype | None = None
    tf_slim_pools: bool = False

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array]:
        """Runs the trunk.

        Args:
            x: (B, 299, 299, 3) images in [-1, 1] (other sizes >= 75 work; the shapes below are
                for 299).
            train: BatchNorm batch statistics (and running-stat updates) instead of running stats.

        Returns:
            ``(mixed_6e, pooled)``: Mixed_6e output (B, 17, 17, 768) and the spatial mean of
            Mixed_7c (B, 2048) (= ``avg_pool2d(·, 8)`` of CNN_ENCODER and torchvision's adaptive
            average pool at 299).
        """
        fid, dt = self.fid_variant or self.tf_slim_pools, self.dtype
        x = BasicConv2d(32, 3, 2, 0, dt, name="Conv2d_1a_3x3")(x, train)  # (B, 149, 149, 32)
        x = BasicConv2d(32, 3, 1, 0, dt, name="Conv2d_2a_3x3")(x, train)  # (B, 147, 147, 32)
        x = BasicConv2d(64, 3, 1, 1, dt, name="Conv2d_2b_3x3")(x, train)  # (B, 147, 147, 64)
        x = _max_pool3s2(x)  # (B, 73, 73, 64)
        x = BasicConv2d(80, 1, 1, 0, dt, name="Conv2d_3b_1x1")(x, train)  # (B, 73, 73, 80)
        x = BasicConv2d(192, 3, 1, 0, dt, name="Conv2d_4a_3x3")(x, train)  # (B, 71, 71, 192)
        x = _max_pool3s2(x)  # (B, 35, 35, 192)
        x = InceptionA(32, fid, dt, name="Mixed_5b")(x, train)  # (B, 35, 35, 256)
        x = InceptionA(64, fid, dt, name="Mixed_5c")(x, train)  # (B, 35, 35, 288)
        x = InceptionA(64, fid, dt, name="Mixed_5d")(x, train)  # (B, 35, 35, 288)
        x = InceptionB(dt, name="Mixed_6a")(x, train)  # (B, 17, 17, 768)
        for name, c7 in (
            ("Mixed_6b", 128),
            ("Mixed_6c", 160),
            ("Mixed_6d", 160),
            ("Mixed_6e", 192),
        ):
            x = InceptionC(c7, fid, dt, name=name)(x, train)  # (B, 17, 17, 768)
        mixed_6e = x
        x = InceptionD(dt, name="Mixed_7a")(x, train)  # (B, 8, 8, 1280)
        x = InceptionE("avg_exclude_pad" if fid else "avg", dt, name="Mixed_7b")(x, train)
        pool_7c = "avg_exclude_pad" if self.tf_slim_pools else ("max" if fid else "avg")
        x = InceptionE(pool_7c, dt, name="Mixed_7c")(x, train)  # (B, 8, 8, 2048)
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)  # (B, 2048)
        return mixed_6e, pooled


def transform_input(x: Array) -> Array:
    """Torchvision's ``transform_input``: ImageNet-normalised input -> Inception's [-1, 1] scale.

    ``x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5`` per RGB channel (NHWC, channel last).
    """
    mean = jnp.asarray([0.485, 0.456, 0.406], jnp.float32)
    std = jnp.asarray([0.229, 0.224, 0.225], jnp.float32)
    return (x * (std / 0.5) + (mean - 0.5) / 0.5).astype(x.dtype)


class InceptionClassifier(nn.Module):
    """torchvision ``inception_v3`` logits (eval path): trunk -> global average pool -> fc.

    Attributes:
        num_classes: 1000 (torchvision ImageNet) or 1008 (the 2015 TF graph used for IS/FID).
        transform_input: apply :func:`transform_input` first (torchvision sets it for its
            ImageNet weights).
        fid_variant: use pytorch-fid's pools (for the 2015 network's weights).
        dtype: computation dtype.
    """

    num_classes: int = 1000
    transform_input: bool = False
    fid_variant: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """(B, 299, 299, 3) -> logits (B, num_classes) (softmax gives p(y|x) for the IS)."""
        if self.transform_input:
            x = transform_input(x)
        _, pooled = InceptionTrunk(self.fid_variant, self.dtype, name="inception")(x, train)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="fc")(
            pooled
        )


class FIDInceptionV3(nn.Module):
    """pytorch-fid ``InceptionV3(output_blocks=[2, 3])`` with the FID (2015 TF) variant.

    Attributes:
        resize_input: bilinear resize to 299x299 with ``align_corners=False`` (as pytorch-fid).
        normalize_input: map [0, 1] inputs to [-1, 1] (``2x - 1``).
        dtype: computation dtype.
    """

    resize_input: bool = True
    normalize_input: bool = True
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array]:
        """Features for FID.

        Args:
            x: (B, H, W, 3) images in [0, 1] (with ``normalize_input``).
            train: BatchNorm mode (always False for FID).

        Returns:
            ``(block2, pool3)``: Mixed_6e (B, 17, 17, 768) and the 2048-d pool3 feature (B, 2048).
        """
        if self.resize_input:
            x = resize_bilinear(x, (299, 299), align_corners=False)
        if self.normalize_input:
            x = 2 * x - 1  # (0, 1) -> (-1, 1)
        return InceptionTrunk(True, self.dtype, name="inception")(x, train)
