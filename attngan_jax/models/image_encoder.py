"""DAMSM image encoder ``CNN_ENCODER`` (reference §4) and a small trunk for CPU-sized data.

``CNNEncoder(trunk="inception")`` is the original: resize to 299x299, Inception-v3 up to Mixed_7c,
then two trainable projections into the common (text) embedding space of width ``nef``:

* ``emb_features``: 1x1 conv (no bias) 768 -> nef on Mixed_6e: local region features e (17x17 =
  289 sub-regions; the paper's ``e = W f``, Sec. 3.4 / Eq. (8));
* ``emb_cnn_code``: Dense 2048 -> nef (with bias) on the pooled Mixed_7c: the global vector e-bar.

Resize convention: ``align_corners=True`` (default) is what ``nn.Upsample(mode='bilinear')`` did in
PyTorch 0.3.1, with which the released image encoders and generators were trained; modern PyTorch
(and ports relying on its default) give ``align_corners=False``. It only matters for inputs that
are not already 299x299 (e.g. the GAN's 256x256 images in the generator loss and R-precision).

Train/eval: in AttnGAN the Inception trunk is frozen (its parameters get no updates) and only the
two heads are trained; :func:`trainable_mask` marks them for an optax mask. Use ``train=False``
(running statistics) everywhere the encoder is only evaluated (GAN training, R-precision). The
original DAMSM pretraining, however, called ``cnn_model.train()``, so the frozen Inception's
BatchNorm used *batch* statistics and its running statistics drifted to the dataset's (reference
§4, §16.3, §16.9). ``train=True`` (with ``mutable=["batch_stats"]``) reproduces that faithfully.

``CNNEncoder(trunk="small")`` swaps Inception for :class:`SmallTrunk`, a conv net (1.26M
parameters with the default widths) trained from scratch (all parameters trainable), with no
resize: a 64x64 image gives 8x8 local features, so the DAMSM losses can be trained on the toy
shapes data on a CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from attngan_jax.models.inception import BasicConv2d, InceptionTrunk
from attngan_jax.models.layers import Dtype
from attngan_jax.models.resize import resize_bilinear

Array = jax.Array

_HEADS = ("emb_features", "emb_cnn_code")


class SmallTrunk(nn.Module):
    """A small conv trunk returning local features and a pooled global feature.

    A stride-2 3x3 stem at ``widths[0]``, then per further width one stride-2 3x3 ``BasicConv2d``
    and one stride-1 3x3. The local features are the output of the second-to-last stage, the
    global feature is the spatial mean of the last one (the roles of Mixed_6e and Mixed_7c).

    With ``spatial_global=True`` the global feature is the *flattened* last feature map instead of
    its mean, so the global code (and the sentence loss, and R-precision) sees where things are:
    a mean-pooled code is nearly translation invariant and cannot tell "a red circle on the left"
    from "... on the right" (the shapes demo needs this; Inception's pooled code has the same
    blind spot, which is fine for CUB/COCO captions).

    Attributes:
        widths: channels of the stem and of each stride-2 stage (at least 3 entries).
        spatial_global: flatten instead of mean-pool the last map for the global feature.
        dtype: computation dtype.
    """

    widths: tuple[int, ...] = (32, 64, 128, 256)
    spatial_global: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array]:
        """Runs the trunk.

        Args:
            x: (B, H, W, 3) images in [-1, 1]; H and W divisible by ``2 ** len(widths)``.
            train: BatchNorm batch statistics.

        Returns:
            ``(local, pooled)``: (B, H/2^(n-1), W/2^(n-1), widths[-2]) and (B, widths[-1]), with
            n = len(widths); for 64x64 and 4 widths: (B, 8, 8, 128) and (B, 256).
        """
        if len(self.widths) < 3:
            raise ValueError(f"SmallTrunk needs at least 3 widths, got {self.widths}")
        # grad="auto": on CPU the padded convs on 2x2 maps (the last stage at 32x32 inputs) run as
        # matmuls over their patches, 10-20x faster than XLA:CPU's convolution there.
        conv = functools.partial(BasicConv2d, dtype=self.dtype, grad="auto")
        x = conv(self.widths[0], 3, 2, 1, name="stem")(x, train)  # H/2
        local = x
        for i, w in enumerate(self.widths[1:], start=1):
            x = conv(w, 3, 2, 1, name=f"stage{i}_down")(x, train)  # H/2
            x = conv(w, 3, 1, 1, name=f"stage{i}_conv")(x, train)
            if i == len(self.widths) - 2:
                local = x
        if self.spatial_global:
            return local, x.reshape(x.shape[0], -1)  # (B, h * w * widths[-1])
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)  # (B, widths[-1])
        return local, pooled


class CNNEncoder(nn.Module):
    """DAMSM image encoder (``CNN_ENCODER``).

    Attributes:
        nef: width of the common embedding space (``TEXT.EMBEDDING_DIM``, 256 in every release).
        trunk: ``"inception"`` (the original, frozen ImageNet Inception-v3) or ``"small"``.
        align_corners: resize convention for non-299 inputs (Inception trunk only); True = the
            PyTorch 0.3 behaviour of the released models.
        image_size: size the Inception trunk's input is resized to (299).
        small_widths: :class:`SmallTrunk` widths (``trunk="small"`` only).
        small_spatial_global: :class:`SmallTrunk` ``spatial_global`` (``trunk="small"`` only).
        dtype: computation dtype.
    """

    nef: int = 256
    trunk: str = "inception"
    align_corners: bool = True
    image_size: int = 299
    small_widths: tuple[int, ...] = (32, 64, 128, 256)
    small_spatial_global: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, images: Array, train: bool = False) -> tuple[Array, Array]:
        """Encodes images.

        Args:
            images: (B, H, W, 3) in [-1, 1] (no ImageNet mean/std normalisation, as the original).
            train: BatchNorm mode of the trunk (see the module docstring); the heads have none.

        Returns:
            ``(features, cnn_code)``: local features (B, h, w, nef) ((B, 17, 17, nef) for
            Inception) and the global code (B, nef).
        """
        if self.trunk == "inception":
            size = (self.image_size, self.image_size)
            x = resize_bilinear(images, size, self.align_corners)  # (B, 299, 299, 3)
            local, pooled = InceptionTrunk(False, self.dtype, name="inception")(x, train)
        elif self.trunk == "small":
            trunk = SmallTrunk(
                self.small_widths, self.small_spatial_global, self.dtype, name="small"
            )
            local, pooled = trunk(images, train)
        else:
            raise ValueError(f"unknown trunk {self.trunk!r} (expected 'inception' or 'small')")
        init = _uniform_pm(0.1)  # the original's init_trainable_weights: U(-0.1, 0.1)
        features = nn.Conv(
            self.nef,
            (1, 1),
            use_bias=False,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=init,
            name="emb_features",
        )(local)  # (B, h, w, nef)
        fan_in = pooled.shape[-1]
        cnn_code = nn.Dense(
            self.nef,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=init,
            bias_init=_uniform_pm(1.0 / fan_in**0.5),  # torch Linear default bias init
            name="emb_cnn_code",
        )(pooled)  # (B, nef)
        return features, cnn_code


def _uniform_pm(bound: float):
    """Initialiser drawing uniformly from [-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def trainable_mask(params: Mapping, trunk: str = "inception") -> dict:
    """Boolean pytree over ``params``: which parameters DAMSM pretraining updates.

    Args:
        params: the encoder's ``params`` collection.
        trunk: ``"inception"`` (only ``emb_features`` / ``emb_cnn_code`` train, as the original)
            or ``"small"`` (everything trains).

    Returns:
        A pytree of bools with the structure of ``params`` (usable with ``optax.masked``).
    """
    return {
        k: jax.tree_util.tree_map(lambda _, t=(trunk == "small" or k in _HEADS): t, v)
        for k, v in params.items()
    }
