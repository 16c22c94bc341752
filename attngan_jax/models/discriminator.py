"""AttnGAN discriminators ``D_NET64/128/256`` with conditional and unconditional heads (ref. §7).

Every D encodes its image to a ``(B, 4, 4, 8 * df_dim)`` code and scores it with one or two heads:

* ``COND_DNET`` (always present): the sentence embedding is tiled to 4×4 and concatenated *after*
  the image code, ``jointConv`` (3×3 conv + BN + LeakyReLU) then ``outlogits`` (4×4 conv, stride 4,
  with bias) → one logit per sample.
* ``UNCOND_DNET`` (``uncond=True``, the original's ``b_jcu``; AttnGAN uses it, AttnDCGAN does
  not): ``outlogits`` directly on the image code.

Heads return **logits**; the original ends them in ``nn.Sigmoid`` and trains with ``nn.BCELoss``,
so its "logits" are ``sigmoid(ours)``.

API. The discriminator loss must run the real images, the fake images and the mismatched pair as
*separate* BatchNorm batches (ref. §8.5), so the module exposes its pieces as methods::

    d = Discriminator(df_dim=64, emb_dim=256, image_size=128)
    variables = init_discriminator(d, jax.random.key(0))        # ref. §9 initialisation
    code, upd = d.apply(variables, imgs, True, mutable=["batch_stats"])       # (B, 4, 4, 8 df)
    cond = d.apply(variables, code, sent, False, method="cond_logits")        # (B,)
    uncond = d.apply(variables, code, method="uncond_logits")                 # (B,)

Two same-sized BatchNorm batches can share the convolutions: interleave their rows and pass
``bn_groups=2`` (``__call__`` and ``cond_logits``); each is still normalised with its own
statistics, and the running statistics are updated with the first, then the second, as two calls
would (``losses.discriminator_loss`` runs real and fake this way).

``Discriminator.all_logits`` runs the three in one call (used by ``init``). Submodule names mirror
the torch keys (``img_code_s16/conv2`` ↔ ``img_code_s16.2.weight``), see
:mod:`attngan_jax.convert.discriminator`.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from attngan_jax.models.layers import Array, BatchNorm, Dtype, conv, conv3x3
from attngan_jax.types import PRNGKey, PyTree


def _lrelu(x: Array) -> Array:
    return nn.leaky_relu(x, negative_slope=0.2)


class EncodeImageBy16(nn.Module):
    """``encode_image_by_16times``: four 4×4 stride-2 convs, (B, H, W, 3) -> (B, H/16, W/16, 8 ndf).

    BN + LeakyReLU(0.2) after every conv but the first, which has LeakyReLU only.

    Attributes:
        ndf: base width (DF_DIM).
        dtype: computation dtype.
    """

    ndf: int
    num_down: int = 4
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool, bn_groups: int = 1) -> Array:
        """Encodes NHWC images (B, H, W, 3) to (B, H/16, W/16, 8 * ndf).

        ``bn_groups``: independent BatchNorm batches interleaved in ``x`` (see
        :class:`~attngan_jax.models.layers.BatchNorm`).

        ``num_down=3`` / ``2`` (the 32×32 / 16×16 discriminators of CPU demos, not in the original)
        stop after the third / second conv: (B, H/8, W/8, 4 * ndf) / (B, H/4, W/4, 2 * ndf).
        """
        x = _lrelu(conv(self.ndf, 4, 2, 1, dtype=self.dtype, name="conv0")(x))
        for i, mult in ((2, 2), (5, 4), (8, 8))[: self.num_down - 1]:  # torch: conv i, BN i + 1
            x = conv(self.ndf * mult, 4, 2, 1, dtype=self.dtype, name=f"conv{i}")(x)
            x = _lrelu(BatchNorm(dtype=self.dtype, name=f"bn{i + 1}")(x, train, bn_groups))
        return x


class DownBlock(nn.Module):
    """``downBlock``: 4×4 stride-2 conv (no bias) → BN → LeakyReLU(0.2); halves H and W."""

    features: int
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool, bn_groups: int = 1) -> Array:
        """(B, H, W, C) -> (B, H/2, W/2, features)."""
        x = conv(self.features, 4, 2, 1, dtype=self.dtype, name="conv")(x)
        return _lrelu(BatchNorm(dtype=self.dtype, name="bn")(x, train, bn_groups))


class Block3x3LeakyReLU(nn.Module):
    """``Block3x3_leakRelu``: 3×3 conv (no bias) → BN → LeakyReLU(0.2)."""

    features: int
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool, bn_groups: int = 1) -> Array:
        """(B, H, W, C) -> (B, H, W, features)."""
        x = conv3x3(self.features, dtype=self.dtype, name="conv")(x)
        return _lrelu(BatchNorm(dtype=self.dtype, name="bn")(x, train, bn_groups))


def _torch_default_bias_init(fan_in: int):
    """PyTorch's default conv bias init ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (kept by §9)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class DGetLogits(nn.Module):
    """``D_GET_LOGITS``: scores a 4×4 image code, optionally conditioned on a sentence vector.

    Attributes:
        ndf: base width; the image code has ``8 * ndf`` channels.
        nef: sentence embedding size (only used when ``conditional``).
        conditional: whether the head has ``jointConv`` and takes ``sent_emb``.
        dtype: computation dtype.
    """

    ndf: int
    nef: int
    conditional: bool
    dtype: Dtype | None = None

    @nn.compact
    def __call__(
        self, h: Array, sent_emb: Array | None = None, train: bool = False, bn_groups: int = 1
    ) -> Array:
        """Scores image codes.

        Args:
            h: image code (B, 4, 4, 8 * ndf).
            sent_emb: sentence embedding (B, nef); required iff ``conditional``.
            train: BatchNorm mode of ``jointConv``.
            bn_groups: independent BatchNorm batches interleaved in the rows of ``h``.

        Returns:
            Logits (B,) in float32 (``sigmoid`` gives the original's probabilities).
        """
        if self.conditional:
            if sent_emb is None:
                raise ValueError("the conditional head needs sent_emb")
            b, hh, ww, _ = h.shape
            c = jnp.broadcast_to(sent_emb[:, None, None, :], (b, hh, ww, sent_emb.shape[-1]))
            x = jnp.concatenate([h, c.astype(h.dtype)], axis=-1)  # (B, 4, 4, 8ndf + nef), h first
            x = Block3x3LeakyReLU(8 * self.ndf, dtype=self.dtype, name="jointConv")(
                x, train, bn_groups
            )
        else:
            x = h
        fan_in = 8 * self.ndf * 16
        out = nn.Conv(
            1,
            (4, 4),
            strides=(4, 4),
            padding="VALID",
            use_bias=True,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.initializers.orthogonal(),
            bias_init=_torch_default_bias_init(fan_in),
            name="outlogits",
        )(x)  # (B, 1, 1, 1)
        return out.reshape(-1).astype(jnp.float32)  # (B,)


class Discriminator(nn.Module):
    """``D_NET64`` / ``D_NET128`` / ``D_NET256`` (picked by ``image_size``).

    Attributes:
        df_dim: DF_DIM (64 birds, 96 COCO).
        emb_dim: sentence embedding size (TEXT.EMBEDDING_DIM, 256).
        image_size: 64, 128 or 256 (the original's three), or 32 / 16 (extensions for CPU-sized
            demos: three / two downsampling convs to 4×4, then a 3×3 block to 8ndf).
        uncond: whether the unconditional head exists (the original's ``b_jcu``).
        dtype: computation dtype (parameters stay float32; logits are float32).
    """

    df_dim: int = 64
    emb_dim: int = 256
    image_size: int = 64
    uncond: bool = True
    dtype: Dtype | None = None

    def setup(self):
        """Creates the trunk for ``image_size`` and the heads (names mirror the torch keys)."""
        ndf = self.df_dim
        if self.image_size not in (16, 32, 64, 128, 256):
            raise ValueError(f"image_size must be 16, 32, 64, 128 or 256, got {self.image_size}")
        if self.image_size in (16, 32):
            num_down = {16: 2, 32: 3}[self.image_size]
            self.img_code_s16 = EncodeImageBy16(ndf, num_down=num_down, dtype=self.dtype)
            self.img_code_s8_1 = Block3x3LeakyReLU(ndf * 8, dtype=self.dtype)
        else:
            self.img_code_s16 = EncodeImageBy16(ndf, dtype=self.dtype)
        if self.image_size == 128:
            self.img_code_s32 = DownBlock(ndf * 16, dtype=self.dtype)
            self.img_code_s32_1 = Block3x3LeakyReLU(ndf * 8, dtype=self.dtype)
        elif self.image_size == 256:
            self.img_code_s32 = DownBlock(ndf * 16, dtype=self.dtype)
            self.img_code_s64 = DownBlock(ndf * 32, dtype=self.dtype)
            self.img_code_s64_1 = Block3x3LeakyReLU(ndf * 16, dtype=self.dtype)
            self.img_code_s64_2 = Block3x3LeakyReLU(ndf * 8, dtype=self.dtype)
        if self.uncond:
            self.UNCOND_DNET = DGetLogits(ndf, self.emb_dim, conditional=False, dtype=self.dtype)
        self.COND_DNET = DGetLogits(ndf, self.emb_dim, conditional=True, dtype=self.dtype)

    def __call__(self, images: Array, train: bool, bn_groups: int = 1) -> Array:
        """Image code of NHWC images.

        Args:
            images: (B, image_size, image_size, 3) in [-1, 1].
            train: BatchNorm mode.
            bn_groups: independent BatchNorm batches interleaved row by row in ``images`` (the
                discriminator loss runs real and fake images through the trunk as one batch of
                ``2B`` with ``bn_groups=2``); see :class:`~attngan_jax.models.layers.BatchNorm`.

        Returns:
            (B, 4, 4, 8 * df_dim).
        """
        g = bn_groups
        # (B, S/16, S/16, 8 ndf); image_size 32, 16: (B, 4, 4, 4|2 ndf)
        x = self.img_code_s16(images, train, g)
        if self.image_size in (16, 32):
            x = self.img_code_s8_1(x, train, g)  # (B, 4, 4, 8 ndf)
        elif self.image_size == 128:
            x = self.img_code_s32(x, train, g)  # (B, 4, 4, 16 ndf)
            x = self.img_code_s32_1(x, train, g)  # (B, 4, 4, 8 ndf)
        elif self.image_size == 256:
            x = self.img_code_s32(x, train, g)  # (B, 8, 8, 16 ndf)
            x = self.img_code_s64(x, train, g)  # (B, 4, 4, 32 ndf)
            x = self.img_code_s64_1(x, train, g)  # (B, 4, 4, 16 ndf)
            x = self.img_code_s64_2(x, train, g)  # (B, 4, 4, 8 ndf)
        return x

    def cond_logits(
        self, img_code: Array, sent_emb: Array, train: bool, bn_groups: int = 1
    ) -> Array:
        """``COND_DNET``: (B, 4, 4, 8 df_dim), (B, emb_dim) -> logits (B,).

        ``bn_groups``: independent BatchNorm batches interleaved in the rows (as ``__call__``).
        """
        return self.COND_DNET(img_code, sent_emb, train, bn_groups)

    def uncond_logits(self, img_code: Array) -> Array:
        """``UNCOND_DNET``: (B, 4, 4, 8 df_dim) -> logits (B,). Needs ``uncond=True``."""
        if not self.uncond:
            raise ValueError("this discriminator has no unconditional head (uncond=False)")
        return self.UNCOND_DNET(img_code)

    def all_logits(
        self, images: Array, sent_emb: Array, train: bool
    ) -> tuple[Array, Array, Array | None]:
        """Image code and both heads in one call (one BN batch each); used to ``init``.

        Returns:
            ``(img_code (B, 4, 4, 8 df_dim), cond_logits (B,), uncond_logits (B,) or None)``.
        """
        code = self(images, train)
        cond = self.cond_logits(code, sent_emb, train)
        unc = self.uncond_logits(code) if self.uncond else None
        return code, cond, unc


def dummy_inputs(module: Discriminator, batch: int = 2) -> tuple[Array, Array]:
    """Zero ``(images (batch, S, S, 3), sent_emb (batch, emb_dim))`` for init / ``eval_shape``."""
    s = module.image_size
    return jnp.zeros((batch, s, s, 3), jnp.float32), jnp.zeros((batch, module.emb_dim), jnp.float32)


def init_discriminator(module: Discriminator, rng: PRNGKey, bn_scale_std: float = 0.02) -> PyTree:
    """Initialises ``{"params", "batch_stats"}`` as the original's ``weights_init`` (ref. §9).

    Convs are orthogonal (the Flax initialisers above), the ``outlogits`` bias is PyTorch's default
    uniform, and every BatchNorm scale is redrawn from ``N(1, bn_scale_std)`` (bias 0) — a plain
    ``module.init`` leaves BN scales at 1, because the shared ``BatchNorm`` has a fixed init.

    Args:
        module: the discriminator.
        rng: PRNG key.
        bn_scale_std: std of the BN scale around 1 (0.02 in the original).

    Returns:
        The variables (float32).
    """
    k_init, k_bn = jax.random.split(rng)
    images, sent = dummy_inputs(module)
    variables = module.init(k_init, images, sent, False, method=Discriminator.all_logits)
    return {**variables, "params": redraw_batchnorm_scales(variables["params"], k_bn, bn_scale_std)}


def redraw_batchnorm_scales(params: PyTree, rng: PRNGKey, std: float = 0.02) -> PyTree:
    """Returns ``params`` with every BatchNorm ``scale`` leaf drawn from ``N(1, std)``."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    keys = jax.random.split(rng, max(len(flat), 1))
    leaves = []
    for (path, leaf), k in zip(flat, keys):
        names = [getattr(p, "key", "") for p in path]
        if names and names[-1] == "scale":
            leaf = 1.0 + std * jax.random.normal(k, leaf.shape, leaf.dtype)
        leaves.append(leaf)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), leaves)


# Named sizes (ref. §7, §15.2): birds DF_DIM 64, COCO 96; tiny variants for tests.
BirdsD64 = functools.partial(Discriminator, df_dim=64, emb_dim=256, image_size=64)
BirdsD128 = functools.partial(Discriminator, df_dim=64, emb_dim=256, image_size=128)
BirdsD256 = functools.partial(Discriminator, df_dim=64, emb_dim=256, image_size=256)
CocoD64 = functools.partial(Discriminator, df_dim=96, emb_dim=256, image_size=64)
CocoD128 = functools.partial(Discriminator, df_dim=96, emb_dim=256, image_size=128)
CocoD256 = functools.partial(Discriminator, df_dim=96, emb_dim=256, image_size=256)
TinyD64 = functools.partial(Discriminator, df_dim=4, emb_dim=8, image_size=64)
TinyD128 = functools.partial(Discriminator, df_dim=4, emb_dim=8, image_size=128)
TinyD256 = functools.partial(Discriminator, df_dim=4, emb_dim=8, image_size=256)
