"""CLIP (Radford et al., 2021) in Flax: the ViT image tower, the text transformer, the logit scale.

The modules mirror open_clip's ``CLIP`` with a ``VisionTransformer`` tower (the layout of OpenAI's
released ViT models), so a converted ``state_dict`` gives the same embeddings
(``attngan_jax.convert.clip``; ``tests/models/test_clip.py`` checks it against open_clip):

* image: patch conv (no bias) -> ``[class_embedding, patches] + positional_embedding`` -> ``ln_pre``
  -> residual attention blocks -> ``ln_post`` of the class token -> ``@ proj``;
* text: ``token_embedding + positional_embedding`` -> causally masked blocks -> ``ln_final`` ->
  the token at the end-of-text position (``argmax`` of the ids: ``<end_of_text>`` has the largest
  id) -> ``@ text_projection``;
* a block is ``x + attn(ln_1(x))`` then ``x + c_proj(act(c_fc(ln_2(x))))``; ``act`` is QuickGELU
  (``x * sigmoid(1.702 x)``) for OpenAI's weights and exact GELU for open_clip's own trainings.

Images are NHWC, already resized to ``image_size`` and normalised with CLIP's mean/std (this module
does no preprocessing); texts are ``(B, context_length)`` int32 ids from
``attngan_jax.models.clip_tokenizer``. LayerNorms use torch's ``eps=1e-5``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attngan_jax.types import Array

Dtype = Any
LN_EPS = 1e-5  # torch.nn.LayerNorm's default, used by every CLIP LayerNorm


@dataclasses.dataclass(frozen=True)
class CLIPSpec:
    """The architecture of a ViT CLIP (what ``clip.json`` of a converted model holds).

    Attributes:
        embed_dim: width of the joint image-text embedding.
        image_size: input height = width in pixels.
        patch_size: side of the square patches (the patch conv's kernel and stride).
        vision_width: width of the image transformer.
        vision_layers: residual attention blocks of the image transformer.
        vision_heads: attention heads of the image transformer (open_clip: ``width // 64``).
        context_length: text positions (77 for every released CLIP).
        vocab_size: token ids (49,408 for the BPE vocabulary of ``clip_tokenizer``).
        text_width: width of the text transformer.
        text_layers: residual attention blocks of the text transformer.
        text_heads: attention heads of the text transformer.
        quick_gelu: QuickGELU (OpenAI's weights) instead of exact GELU in the MLPs.
    """

    embed_dim: int = 512
    image_size: int = 224
    patch_size: int = 32
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    quick_gelu: bool = False

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CLIPSpec:
        """The inverse of :meth:`to_json` (unknown keys raise ``TypeError`` naming them)."""
        return cls(**d)


# open_clip's model configs (model_configs/<name>.json); OpenAI's released weights use QuickGELU
# (the "-quickgelu" names; the converter sets it for OpenAI's TorchScript archives).
PRESETS: dict[str, CLIPSpec] = {
    "ViT-B-32": CLIPSpec(),
    "ViT-B-16": CLIPSpec(patch_size=16),
    "ViT-L-14": CLIPSpec(
        embed_dim=768,
        patch_size=14,
        vision_width=1024,
        vision_layers=24,
        vision_heads=16,
        text_width=768,
        text_heads=12,
    ),
}
# Used for testing only.
_TINY = CLIPSpec(
    embed_dim=32,
    image_size=32,
    patch_size=8,
    vision_width=128,
    vision_layers=2,
    vision_heads=2,  # 64-wide heads, as the converter infers
    context_length=77,
    vocab_size=49408,
    text_width=128,
    text_layers=2,
    text_heads=2,
)


def preset(name: str) -> CLIPSpec:
    """The spec of an open_clip model name: ``ViT-B-32``, ``ViT-B-16``, ``ViT-L-14`` (+ ``-quickgelu``).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    base = name.removesuffix("-quickgelu")
    if base not in PRESETS:
        known = sorted(PRESETS) + [f"{n}-quickgelu" for n in sorted(PRESETS)]
        raise ValueError(f"unknown CLIP model '{name}'; known: {', '.join(known)}")
    return dataclasses.replace(PRESETS[base], quick_gelu=name.endswith("-quickgelu"))


def quick_gelu(x: Array) -> Array:
    """OpenAI's GELU approximation ``x * sigmoid(1.702 x)``."""
    return x * jax.nn.sigmoid(1.702 * x)


def _layer_norm(name: str, dtype: Dtype | None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPS, dtype=dtype, name=name)


class MultiheadAttention(nn.Module):
    """torch's ``nn.MultiheadAttention`` (batch first): packed ``in_proj`` (q, k, v) and ``out_proj``.

    Attributes:
        width: model width ``D``.
        heads: attention heads (``D`` must be divisible by it).
        dtype: computation dtype.
    """

    width: int
    heads: int
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        """Self-attention of ``x`` (B, L, D); ``mask`` (L, L) bool, True where attending is allowed."""
        b, n, d = x.shape
        hd = d // self.heads
        qkv = nn.Dense(3 * d, dtype=self.dtype, name="in_proj")(x)  # (B, L, 3D)
        qkv = qkv.reshape(b, n, 3, self.heads, hd)  # (B, L, 3, heads, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, L, heads, hd) each
        logits = jnp.einsum("bqhd,bkhd->bhqk", q / math.sqrt(hd), k)  # (B, heads, L, L)
        if mask is not None:
            logits = jnp.where(mask, logits, -jnp.inf)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, d)  # (B, L, D)
        return nn.Dense(d, dtype=self.dtype, name="out_proj")(out)


class MLP(nn.Module):
    """``c_proj(act(c_fc(x)))`` with a 4x hidden width."""

    width: int
    quick_gelu: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """(B, L, D) -> (B, L, D)."""
        h = nn.Dense(4 * self.width, dtype=self.dtype, name="c_fc")(x)
        h = quick_gelu(h) if self.quick_gelu else nn.gelu(h, approximate=False)
        return nn.Dense(self.width, dtype=self.dtype, name="c_proj")(h)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    width: int
    heads: int
    quick_gelu: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        """(B, L, D) -> (B, L, D); ``mask`` as in :class:`MultiheadAttention`."""
        attn = MultiheadAttention(self.width, self.heads, self.dtype, name="attn")
        x = x + attn(_layer_norm("ln_1", self.dtype)(x), mask)
        mlp = MLP(self.width, self.quick_gelu, self.dtype, name="mlp")
        return x + mlp(_layer_norm("ln_2", self.dtype)(x))


class Transformer(nn.Module):
    """``layers`` blocks named ``resblocks_<i>`` (torch: ``resblocks.<i>``)."""

    width: int
    layers: int
    heads: int
    quick_gelu: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        """(B, L, D) -> (B, L, D)."""
        for i in range(self.layers):
            block = ResidualAttentionBlock(
                self.width, self.heads, self.quick_gelu, self.dtype, name=f"resblocks_{i}"
            )
            x = block(x, mask)
        return x


class VisionTransformer(nn.Module):
    """CLIP's image tower (open_clip ``VisionTransformer`` with a class-token pool)."""

    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    output_dim: int
    quick_gelu: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, images: Array) -> Array:
        """Image embeddings (not normalised).

        Args:
            images: (B, H, W, 3), ``H = W = image_size``, normalised with CLIP's mean and std.

        Returns:
            (B, output_dim).
        """
        grid = self.image_size // self.patch_size
        scale = self.width**-0.5
        init = nn.initializers.normal(scale)
        p = self.patch_size
        x = nn.Conv(self.width, (p, p), (p, p), "VALID", use_bias=False, dtype=self.dtype,
                    name="conv1")(images)  # (B, grid, grid, D)  # fmt: skip
        b = x.shape[0]
        x = x.reshape(b, grid * grid, self.width)  # (B, N, D), row-major as torch's flatten
        cls = self.param("class_embedding", init, (self.width,))
        cls = jnp.broadcast_to(cls.astype(x.dtype), (b, 1, self.width))  # (B, 1, D)
        x = jnp.concatenate([cls, x], axis=1)  # (B, N+1, D)
        pos = self.param("positional_embedding", init, (grid * grid + 1, self.width))
        x = _layer_norm("ln_pre", self.dtype)(x + pos.astype(x.dtype))
        x = Transformer(self.width, self.layers, self.heads, self.quick_gelu, self.dtype,
                        name="transformer")(x)  # fmt: skip
        x = _layer_norm("ln_post", self.dtype)(x[:, 0])  # (B, D): the class token
        proj = self.param("proj", init, (self.width, self.output_dim))
        return x @ proj.astype(x.dtype)  # (B, E)


def _normalize(x: Array) -> Array:
    """``torch.nn.functional.normalize``: ``x / max(||x||, 1e-12)`` over the last axis."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class CLIP(nn.Module):
    """CLIP with a ViT image tower; parameter names mirror open_clip's ``state_dict`` keys.

    Attributes: those of :class:`CLIPSpec` (see there), and ``dtype``, the computation dtype
    (parameters stay float32).
    """

    embed_dim: int
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    quick_gelu: bool = False
    dtype: Dtype | None = None

    def setup(self):
        """The towers and the text-side parameters (named as open_clip's keys)."""
        self.visual = VisionTransformer(
            self.image_size, self.patch_size, self.vision_width, self.vision_layers,
            self.vision_heads, self.embed_dim, self.quick_gelu, self.dtype,
        )  # fmt: skip
        self.token_embedding = nn.Embed(
            self.vocab_size, self.text_width, embedding_init=nn.initializers.normal(0.02)
        )
        self.positional_embedding = self.param(
            "positional_embedding",
            nn.initializers.normal(0.01),
            (self.context_length, self.text_width),
        )
        self.transformer = Transformer(
            self.text_width, self.text_layers, self.text_heads, self.quick_gelu, self.dtype
        )
        self.ln_final = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype)
        self.text_projection = self.param(
            "text_projection",
            nn.initializers.normal(self.text_width**-0.5),
            (self.text_width, self.embed_dim),
        )
        self.logit_scale = self.param(
            "logit_scale", nn.initializers.constant(math.log(1 / 0.07)), ()
        )

    def encode_image(self, images: Array, normalize: bool = False) -> Array:
        """Image embeddings ``(B, embed_dim)`` of normalised NHWC images ``(B, H, W, 3)``."""
        x = self.visual(images)
        return _normalize(x) if normalize else x

    def text_tokens(self, texts: Array) -> Array:
        """Per-token features after ``ln_final``, before the projection (for word features).

        Args:
            texts: (B, context_length) int token ids (``clip_tokenizer.tokenize``).

        Returns:
            (B, context_length, text_width). Position ``t`` has seen positions ``<= t`` only
            (causal mask); positions after ``<end_of_text>`` are padding.
        """
        n = self.context_length
        x = self.token_embedding(texts).astype(self.dtype or jnp.float32)  # (B, L, W)
        x = x + self.positional_embedding.astype(x.dtype)
        causal = jnp.tril(jnp.ones((n, n), bool))  # (L, L): query q attends to keys k <= q
        return self.ln_final(self.transformer(x, causal))

    def encode_text(self, texts: Array, normalize: bool = False) -> Array:
        """Text embeddings ``(B, embed_dim)``: the end-of-text token's features, projected.

        Args:
            texts: (B, context_length) int token ids.
            normalize: divide by the L2 norm (as open_clip's ``normalize=True``).
        """
        x = self.text_tokens(texts)  # (B, L, W)
        eot = jnp.argmax(texts, axis=-1)  # (B,): <end_of_text> has the largest id
        x = x[jnp.arange(x.shape[0]), eot]  # (B, W)
        x = x @ self.text_projection.astype(x.dtype)  # (B, E)
        return _normalize(x) if normalize else x

    def __call__(self, images: Array, texts: Array) -> tuple[Array, Array, Array]:
        """open_clip's ``forward``: normalised image and text embeddings and ``exp(logit_scale)``.

        Args:
            images: (B, H, W, 3) normalised images.
            texts: (B', context_length) token ids.

        Returns:
            ``(image_features (B, E), text_features (B', E), scale ())``; the logits are
            :func:`logits` of them.
        """
        return (
            self.encode_image(images, normalize=True),
            self.encode_text(texts, normalize=True),
            jnp.exp(self.logit_scale),
        )


def logits(image_features: Array, text_features: Array, scale: Array) -> tuple[Array, Array]:
    """``(logits_per_image (B, B'), logits_per_text (B', B))`` from :meth:`CLIP.__call__`'s outputs."""
    per_image = scale * image_features @ text_features.T  # (B, B')
    return per_image, per_image.T


def build(spec: CLIPSpec, dtype: Dtype | None = None) -> CLIP:
    """The :class:`CLIP` module of ``spec`` (the one place that turns a spec into a module)."""
    return CLIP(**spec.to_json(), dtype=dtype)


def init_shapes(spec: CLIPSpec) -> Any:
    """The variables' shapes of ``build(spec)`` (``jax.eval_shape``; nothing is computed)."""
    model = build(spec)
    images = jnp.zeros((1, spec.image_size, spec.image_size, 3), jnp.float32)
    texts = jnp.zeros((1, spec.context_length), jnp.int32)
    return jax.eval_shape(model.init, jax.random.key(0), images, texts)
