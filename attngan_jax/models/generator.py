"""AttnGAN generator: conditioning augmentation, the stages and the image heads (reference §6).

``G_NET`` (every released AttnGAN model) is ``Generator(dcgan=False)``; ``G_DCGAN`` (AttnDCGAN) is
``Generator(dcgan=True, r_num=0)``. Module names mirror the torch keys (``ca_net``, ``h_net1``,
``img_net2``, ``att.conv_context`` ...); inside torch ``nn.Sequential``s the numbered children get
names (``upsample1.1`` -> ``upsample1/conv``), see ``attngan_jax.convert.generator``.

Weight init follows ``miscc.utils.weights_init`` (§9): orthogonal conv and linear weights, zero
linear bias. Its BatchNorm scale ~ N(1, 0.02) is applied by :func:`perturb_batchnorm_scales` after
``init`` (``layers.BatchNorm`` initialises the scale to 1).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from attngan_jax.models.attention import GlobalAttentionGeneral
from attngan_jax.models.layers import BatchNorm, UpsampleConv3x3, conv3x3, glu

Dtype = Any
Array = jax.Array


class UpBlock(nn.Module):
    """``upBlock``: nearest ×2 -> conv3x3 (2·out) -> BN -> GLU; (B, H, W, C) -> (B, 2H, 2W, out).

    Attributes:
        features: output channels (the conv has twice as many, halved by the GLU).
        dtype: computation dtype.
        upsample_method: how the upsample + conv3x3 pair is computed (``layers.upsample_conv3x3``):
            ``"auto"`` (the 2×2 phase form on CPU from 8×8 inputs, same result up to float32
            rounding), ``"direct"`` or ``"phases"``.
    """

    features: int
    dtype: Dtype | None = None
    upsample_method: str = "auto"

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """(B, H, W, C) -> (B, 2H, 2W, features); ``train`` selects BatchNorm batch statistics."""
        up_conv = UpsampleConv3x3(2 * self.features, self.upsample_method, self.dtype, name="conv")
        x = up_conv(x)  # nearest ×2, then conv3x3
        x = BatchNorm(dtype=self.dtype, name="bn")(x, train)
        return glu(x)


class ResBlock(nn.Module):
    """``ResBlock``: conv3x3 (2c) -> BN -> GLU -> conv3x3 (c) -> BN, plus the input.

    There is no activation after the sum.
    """

    channels: int
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool) -> Array:
        """(B, H, W, channels) -> same shape."""
        y = conv3x3(2 * self.channels, dtype=self.dtype, name="conv1")(x)
        y = glu(BatchNorm(dtype=self.dtype, name="bn1")(y, train))
        y = conv3x3(self.channels, dtype=self.dtype, name="conv2")(y)
        y = BatchNorm(dtype=self.dtype, name="bn2")(y, train)
        return y + x


class CANet(nn.Module):
    """Conditioning augmentation ``CA_NET`` (§6.2): ``c = eps * exp(logvar / 2) + mu``.

    Attributes:
        condition_dim: ``ncf`` (CONDITION_DIM, 100).
        dtype: computation dtype.
    """

    condition_dim: int
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, sent_emb: Array, eps: Array | None = None) -> tuple[Array, Array, Array]:
        """Samples the condition code.

        Args:
            sent_emb: (B, nef) sentence features.
            eps: (B, ncf) standard normal noise; None draws it from the ``"ca"`` rng.

        Returns:
            c_code, mu, logvar, each (B, ncf).
        """
        ncf = self.condition_dim
        x = nn.Dense(
            4 * ncf,
            use_bias=True,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.initializers.orthogonal(),
            bias_init=nn.initializers.zeros,
            name="fc",
        )(sent_emb)
        x = glu(x).astype(jnp.float32)  # (B, 2·ncf)
        mu, logvar = x[:, :ncf], x[:, ncf:]
        if eps is None:
            eps = jax.random.normal(self.make_rng("ca"), mu.shape, jnp.float32)
        c_code = eps * jnp.exp(0.5 * logvar) + mu
        return c_code, mu, logvar


class InitStageG(nn.Module):
    """``INIT_STAGE_G`` (§6.3): [c, z] -> (B, 4·2^n, 4·2^n, ngf_in / 2^n), n = ``num_upsamples``.

    The original has n = 4: (B, 64, 64, ngf_in / 16).

    Attributes:
        ngf_in: channels at 4×4 (``16·GF_DIM`` in the original).
        num_upsamples: upsampling blocks, each doubling the size and halving the channels.
        dtype: computation dtype.
    """

    ngf_in: int
    num_upsamples: int = 4
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, z: Array, c_code: Array, train: bool) -> Array:
        """Maps noise and condition to the first hidden state.

        Args:
            z: (B, nz) noise.
            c_code: (B, ncf) condition code.
            train: BatchNorm batch statistics.

        Returns:
            (B, 4·2^n, 4·2^n, ngf_in // 2^n) features, n = ``num_upsamples``.
        """
        x = jnp.concatenate([c_code, z], axis=1)  # c first, then z: (B, ncf + nz)
        x = nn.Dense(
            self.ngf_in * 16 * 2,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.initializers.orthogonal(),
            name="fc",
        )(x)
        x = glu(BatchNorm(dtype=self.dtype, name="fc_bn")(x, train))  # (B, ngf_in·16)
        b = x.shape[0]
        x = x.reshape(b, self.ngf_in, 4, 4)  # torch C order: feature = c·16 + y·4 + x
        x = x.transpose(0, 2, 3, 1)  # (B, 4, 4, ngf_in)
        for i in range(self.num_upsamples):  # 4 -> 8 -> 16 -> 32 (-> 64), channels halved each time
            x = UpBlock(self.ngf_in // 2 ** (i + 1), dtype=self.dtype, name=f"upsample{i + 1}")(
                x, train
            )
        return x


class NextStageG(nn.Module):
    """``NEXT_STAGE_G`` (§6.4): attention, concat [h, ctx], residual blocks, upsampling.

    Attributes:
        ngf: GF_DIM.
        emb_dim: word feature size (nef).
        r_num: number of residual blocks (R_NUM).
        faithful_mask: see :class:`GlobalAttentionGeneral`.
        dtype: computation dtype.
    """

    ngf: int
    emb_dim: int
    r_num: int
    faithful_mask: bool = True
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, h: Array, words: Array, mask: Array, train: bool) -> tuple[Array, Array]:
        """(B, H, W, ngf) -> ((B, 2H, 2W, ngf), attention (B, T, H, W)); ignores c_code as §16.8."""
        att = GlobalAttentionGeneral(
            self.ngf, self.emb_dim, faithful_mask=self.faithful_mask, dtype=self.dtype, name="att"
        )
        ctx, attn = att(h, words, mask)
        x = jnp.concatenate([h, ctx.astype(h.dtype)], axis=-1)  # (B, H, W, 2·ngf)
        for i in range(self.r_num):
            x = ResBlock(2 * self.ngf, dtype=self.dtype, name=f"residual_{i}")(x, train)
        x = UpBlock(self.ngf, dtype=self.dtype, name="upsample")(x, train)
        return x, attn


class ImageHead(nn.Module):
    """``GET_IMAGE_G`` (§6.5): conv3x3 -> 3 channels, tanh; (B, H, W, ngf) -> (B, H, W, 3)."""

    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, h: Array) -> Array:
        """(B, H, W, ngf) -> (B, H, W, 3) in [-1, 1] (float32)."""
        return jnp.tanh(conv3x3(3, dtype=self.dtype, name="img")(h).astype(jnp.float32))


@flax.struct.dataclass
class GeneratorOutput:
    """What :class:`Generator` returns.

    Attributes:
        fake_imgs: images per built stage i = 0, 1, ..., (B, S·2^i, S·2^i, 3) in [-1, 1] with
            S = ``Generator.base_size`` (only the last stage for the DCGAN variant).
        att_maps: word attention per next stage i = 1, 2, ..., (B, T, S·2^i, S·2^i).
        mu: (B, ncf) CA mean.
        logvar: (B, ncf) CA log-variance.
        c_code: (B, ncf) the sampled condition.
    """

    fake_imgs: tuple[Array, ...]
    att_maps: tuple[Array, ...]
    mu: Array
    logvar: Array
    c_code: Array


class Generator(nn.Module):
    """``G_NET`` / ``G_DCGAN`` (§6.6, §6.7).

    Attributes:
        gf_dim: GF_DIM (32 birds, 48 COCO).
        emb_dim: TEXT.EMBEDDING_DIM (nef, 256).
        z_dim: Z_DIM (100).
        condition_dim: CONDITION_DIM (ncf, 100).
        r_num: residual blocks per next stage (2 birds, 3 COCO, 0 AttnDCGAN).
        num_stages: TREE.BRANCH_NUM (1, 2 or 3): output sizes ``base_size · 2^i`` (64, 128, 256
            in the original; 16, 32 in the shapes demo).
        base_size: first-stage resolution, ``4 * 2**k`` (64 in the original, where INIT_STAGE_G
            starts at ``16 * gf_dim`` channels and upsamples 4 times). Smaller values start at
            ``gf_dim * base_size / 4`` channels and upsample ``log2(base_size / 4)`` times, so every
            stage still ends with ``gf_dim`` channels (16 in the CPU shapes demo).
        dcgan: ``G_DCGAN``: a single image head (``img_net``) on the last stage.
        faithful_mask: reproduce the original's misaligned attention mask.
        dtype: computation dtype.
    """

    gf_dim: int = 32
    emb_dim: int = 256
    z_dim: int = 100
    condition_dim: int = 100
    r_num: int = 2
    num_stages: int = 3
    base_size: int = 64
    dcgan: bool = False
    faithful_mask: bool = True
    dtype: Dtype | None = None

    @nn.compact
    def __call__(
        self,
        z: Array,
        sent_emb: Array,
        words_emb: Array,
        mask: Array,
        train: bool,
        eps: Array | None = None,
    ) -> GeneratorOutput:
        """Generates images from noise and text features.

        Args:
            z: (B, z_dim) noise.
            sent_emb: (B, emb_dim) sentence features.
            words_emb: (B, T, emb_dim) word features (0 at padding).
            mask: (B, T) bool, True at padding.
            train: BatchNorm batch statistics (apply with ``mutable=["batch_stats"]``).
            eps: (B, condition_dim) CA noise; None draws it from the ``"ca"`` rng.

        Returns:
            A :class:`GeneratorOutput`.
        """
        if self.num_stages not in (1, 2, 3):
            raise ValueError(f"num_stages must be 1, 2 or 3, got {self.num_stages}")
        c_code, mu, logvar = CANet(self.condition_dim, dtype=self.dtype, name="ca_net")(
            sent_emb, eps
        )
        ups = int(round(math.log2(self.base_size / 4)))
        if self.base_size != 4 * 2**ups or ups < 1:
            raise ValueError(
                f"base_size must be 4 * 2**k (8, 16, 32, 64, ...), got {self.base_size}"
            )
        h = InitStageG(
            self.gf_dim * self.base_size // 4, num_upsamples=ups, dtype=self.dtype, name="h_net1"
        )(z, c_code.astype(z.dtype), train)
        imgs, atts = [], []
        if not self.dcgan:
            imgs.append(ImageHead(dtype=self.dtype, name="img_net1")(h))
        for i in range(2, self.num_stages + 1):
            stage = NextStageG(
                self.gf_dim,
                self.emb_dim,
                self.r_num,
                faithful_mask=self.faithful_mask,
                dtype=self.dtype,
                name=f"h_net{i}",
            )
            h, att = stage(h, words_emb, mask, train)
            atts.append(att)
            if not self.dcgan:
                imgs.append(ImageHead(dtype=self.dtype, name=f"img_net{i}")(h))
        if self.dcgan:
            imgs.append(ImageHead(dtype=self.dtype, name="img_net")(h))
        return GeneratorOutput(tuple(imgs), tuple(atts), mu, logvar, c_code)


def perturb_batchnorm_scales(params: Any, rng: jax.Array, std: float = 0.02) -> Any:
    """``weights_init`` for BatchNorm (§9): every BN ``scale`` ~ N(1, std) (bias stays 0).

    Args:
        params: the ``params`` collection of an initialised generator.
        rng: PRNG key.
        std: standard deviation (0.02 in the reference).

    Returns:
        The params with every BatchNorm scale redrawn.
    """
    flat = flax.traverse_util.flatten_dict(params)
    keys = jax.random.split(rng, max(len(flat), 1))
    out = {}
    for k, (path, v) in zip(keys, sorted(flat.items())):
        is_bn = path[-1] == "scale" and path[-2].startswith(("bn", "fc_bn"))
        out[path] = 1.0 + std * jax.random.normal(k, v.shape, v.dtype) if is_bn else v
    return flax.traverse_util.unflatten_dict(out)


GeneratorBirds = functools.partial(Generator, gf_dim=32, r_num=2)
GeneratorCOCO = functools.partial(Generator, gf_dim=48, r_num=3)
GeneratorDCGANBirds = functools.partial(Generator, gf_dim=32, r_num=0, dcgan=True)
GeneratorTiny = functools.partial(Generator, gf_dim=4, emb_dim=8, z_dim=6, condition_dim=5, r_num=1)
