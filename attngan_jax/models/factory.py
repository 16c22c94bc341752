"""The one place that builds and initialises the networks: :class:`ModelSpec` <-> ``model.json``.

Training, sampling, evaluation and the converters all build the text encoder, the image encoder,
the generator and the discriminators through the functions here, from a :class:`ModelSpec`: the
widths of every network plus the dataset facts they depend on (vocabulary size, words per caption,
image sizes). A spec comes from an experiment config (:meth:`ModelSpec.from_config`, with the
vocabulary size as an argument: it is a property of the prepared dataset, not of the config) or
from a model directory's ``model.json`` (:meth:`ModelSpec.from_json`), and :meth:`ModelSpec.to_json`
writes that file, so what a run exports is exactly what sampling rebuilds.

Usage::

    spec = ModelSpec.from_config(config, vocab_size=len(vocab))
    gen = factory.generator(spec)
    g_vars = factory.init_generator(spec, jax.random.key(0))
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from attngan_jax.errors import InputError
from attngan_jax.models import clip as clip_lib
from attngan_jax.models.clip_text_encoder import CLIPTextEncoder
from attngan_jax.models.discriminator import Discriminator, init_discriminator
from attngan_jax.models.generator import Generator, perturb_batchnorm_scales
from attngan_jax.models.image_encoder import CNNEncoder
from attngan_jax.models.stages import image_sizes, stage_sizes
from attngan_jax.models.text_encoder import RNNEncoder
from attngan_jax.types import PRNGKey, PyTree

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
TEXT_ENCODERS = ("rnn", "clip")

# A CLIP text tower small enough for the CPU shapes demo (random weights only: no released CLIP
# has this size). The image-side fields are never built by the text encoder.
CLIP_TINY_TEXT = clip_lib.CLIPSpec(
    embed_dim=64, image_size=32, patch_size=8, vision_width=64, vision_layers=1, vision_heads=1,
    text_width=64, text_layers=2, text_heads=2,
)  # fmt: skip
CLIP_TEXT_PRESETS = {"tiny": CLIP_TINY_TEXT}


def clip_preset(name: str) -> clip_lib.CLIPSpec:
    """``"tiny"`` (:data:`CLIP_TINY_TEXT`) or an open_clip name (:func:`clip.preset`).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name in CLIP_TEXT_PRESETS:
        return CLIP_TEXT_PRESETS[name]
    try:
        return clip_lib.preset(name)
    except ValueError as e:
        raise ValueError(f"{e}, tiny") from None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the network builders read. Field names are ``model.json``'s keys.

    Attributes:
        dataset: the dataset the model was trained on (``birds``, ``coco``, ``custom``, ``shapes``).
        words_num: words per caption the networks are built and sampled for (``TEXT.WORDS_NUM``).
        image_sizes: size of every generator stage's image, e.g. ``(64, 128, 256)``.
        vocab_size: words in the vocabulary, padding id 0 included.
        word_embed_dim: size of the text encoder's *input* word embeddings (the original's
            ``ninput``, 300): the lookup table is (vocab_size, word_embed_dim). Config key
            ``model.embed_dim``; ``model.json`` files written before the rename call it
            ``embed_dim`` too (still read).
        emb_dim: size of the *common* text-image space (``TEXT.EMBEDDING_DIM``, nef, 256): the
            text encoder's output (word features and sentence code), the image encoder's region
            features and global code, and what the generator and discriminators are conditioned
            on. Config key ``model.emb_dim``.
        image_trunk: the DAMSM image encoder's trunk, ``"inception"`` or ``"small"``.
        small_trunk_width: first width of the small trunk (doubling per block).
        small_trunk_spatial: the small trunk's global code is the flattened map, not the mean.
        align_corners: bilinear resize convention of the image encoder (True = PyTorch 0.3).
        gf_dim, df_dim: ``GF_DIM`` / ``DF_DIM``, generator / discriminator widths.
        z_dim: noise size; condition_dim: conditioning-augmentation size (``CONDITION_DIM``).
        r_num: residual blocks per refinement stage (``R_NUM``).
        num_stages: generator stages (``BRANCH_NUM``).
        base_size: first stage's resolution.
        dcgan: the AttnDCGAN variant (``B_DCGAN``).
        faithful_mask: the original's misaligned attention mask (reference §16.1).
        damsm_dropout: dropout on the word embeddings while the text encoder trains.
        dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters are float32).
        text_encoder: ``"rnn"`` (the original bi-LSTM) or ``"clip"`` (:class:`CLIPTextEncoder`).
        clip: the CLIP architecture of the ``"clip"`` text encoder (``model.json``: a dict).
        clip_word_pieces: BPE pieces kept per vocabulary word (the piece table's width).
        clip_text_trainable: the CLIP tower is fine-tuned in DAMSM training (False: frozen,
            only the two linear heads learn).
    """

    dataset: str
    words_num: int
    image_sizes: tuple[int, ...]
    vocab_size: int
    word_embed_dim: int = 300
    emb_dim: int = 256
    image_trunk: str = "inception"
    small_trunk_width: int = 32
    small_trunk_spatial: bool = False
    align_corners: bool = True
    gf_dim: int = 32
    df_dim: int = 64
    z_dim: int = 100
    condition_dim: int = 100
    r_num: int = 2
    num_stages: int = 3
    base_size: int = 64
    dcgan: bool = False
    faithful_mask: bool = True
    damsm_dropout: float = 0.5
    dtype: str = "float32"
    text_encoder: str = "rnn"
    clip: clip_lib.CLIPSpec | None = None
    clip_word_pieces: int = 8
    clip_text_trainable: bool = False

    # Keys every model.json has had; the others were added later and default as above.
    REQUIRED = (
        "words_num", "image_sizes", "dataset", "vocab_size", "word_embed_dim", "emb_dim", "image_trunk",
        "align_corners", "small_trunk_width", "gf_dim", "z_dim", "condition_dim", "r_num",
        "num_stages", "base_size", "dcgan", "faithful_mask",
    )  # fmt: skip
    # Keys that older model.json files spell differently: old name -> field.
    RENAMED = {"embed_dim": "word_embed_dim"}

    @classmethod
    def from_config(cls, config, vocab_size: int) -> ModelSpec:
        """The spec of an experiment config (``config.model``, ``config.data``, ``config.dtype``).

        Args:
            config: an experiment config (``attngan_jax.config_lib``).
            vocab_size: the prepared dataset's vocabulary size (``len(Vocabulary)``).
        """
        m = config.model
        clip = None
        if m.text_encoder == "clip":
            clip = clip_spec_of(m.clip, m.clip_preset)
        return cls(
            dataset=config.data.name,
            words_num=int(config.data.words_num),
            image_sizes=tuple(int(s) for s in image_sizes(config)),
            vocab_size=int(vocab_size),
            word_embed_dim=m.embed_dim,
            emb_dim=m.emb_dim,
            image_trunk=m.image_trunk,
            small_trunk_width=m.small_trunk_width,
            small_trunk_spatial=m.small_trunk_spatial,
            align_corners=m.align_corners,
            gf_dim=m.gf_dim,
            df_dim=m.df_dim,
            z_dim=m.z_dim,
            condition_dim=m.condition_dim,
            r_num=m.r_num,
            num_stages=m.num_stages,
            base_size=m.base_size,
            dcgan=m.dcgan,
            faithful_mask=m.faithful_mask,
            damsm_dropout=config.damsm.dropout,
            dtype=config.dtype,
            text_encoder=m.text_encoder,
            clip=clip,
            clip_word_pieces=m.clip_word_pieces,
            clip_text_trainable=m.clip_text_trainable,
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any], source: str = "model.json") -> ModelSpec:
        """The spec of a ``model.json`` dict; keys that are not fields (e.g. ``source``) are ignored.

        A key of :attr:`RENAMED` is read as its new name unless that is present too (older files
        stay loadable).

        Raises:
            InputError: a required key is missing or a value has the wrong type (``source``
                names the file in the message).
        """
        d = dict(d)
        for old, new in cls.RENAMED.items():
            if old in d and new not in d:
                d[new] = d[old]
        missing = [k for k in cls.REQUIRED if k not in d]
        if missing:
            raise InputError(
                f"{source}: lacks the key(s) {missing}; the file was edited or written by another "
                "program: re-export the model directory (train.py writes it at the end of a "
                "phase, python -m attngan_jax.convert.release for the original weights)"
            )
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name == "image_sizes":
                v = tuple(int(s) for s in v)
            if f.name == "clip" and v is not None:
                try:
                    v = clip_lib.CLIPSpec.from_json(v)
                except TypeError as e:
                    raise InputError(
                        f"{source}: 'clip': {e}; re-export the model directory"
                    ) from None
            kwargs[f.name] = v
        try:
            spec = cls(**kwargs)
            spec.check()
        except (TypeError, ValueError) as e:
            raise InputError(f"{source}: {e}; re-export the model directory") from None
        return spec

    def to_json(self) -> dict[str, Any]:
        """The ``model.json`` dict (JSON types only)."""
        d = dataclasses.asdict(self)
        d["image_sizes"] = list(self.image_sizes)
        return d

    def check(self) -> None:
        """Raises ValueError where fields contradict each other."""
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder {self.text_encoder!r} is not one of {TEXT_ENCODERS}")
        if (self.text_encoder == "clip") != (self.clip is not None):
            raise ValueError("text_encoder 'clip' needs a 'clip' spec, and only it")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {sorted(DTYPES)}")
        if list(self.image_sizes) != self.stage_sizes:
            raise ValueError(
                f"image_sizes {list(self.image_sizes)} differ from base_size * 2**i for "
                f"{self.num_stages} stages ({self.stage_sizes})"
            )

    @property
    def stage_sizes(self) -> list[int]:
        """Output size of each generator stage (``base_size * 2**i``, :func:`stages.stage_sizes`)."""
        return list(stage_sizes(self.base_size, self.num_stages))

    @property
    def compute_dtype(self):
        """The jnp dtype of :attr:`dtype`."""
        return DTYPES[self.dtype]


# ----------------------------------------------------------------------------- DAMSM encoders
def clip_spec_of(directory: str, preset: str) -> clip_lib.CLIPSpec:
    """The CLIP spec of ``model.clip`` (a converted directory's ``clip.json``) or ``model.clip_preset``.

    Raises:
        InputError: neither or both are set, the directory has no ``clip.json``, or the preset is
            unknown; the message names the flag and the fix.
    """
    if bool(directory) == bool(preset):
        raise InputError(
            "--config.model.text_encoder=clip needs exactly one of --config.model.clip=DIR (a "
            "directory written by python -m attngan_jax.convert.clip) or "
            "--config.model.clip_preset=NAME (random weights: tiny, ViT-B-32, ...); got "
            f"clip={directory!r}, clip_preset={preset!r}"
        )
    if preset:
        try:
            return clip_preset(preset)
        except ValueError as e:
            raise InputError(f"--config.model.clip_preset={preset!r}: {e}") from None
    path = os.path.join(directory, "clip.json")
    if not os.path.isfile(path):
        raise InputError(
            f"--config.model.clip={directory!r}: no clip.json there; convert CLIP weights with "
            f"python -m attngan_jax.convert.clip --checkpoint=FILE --out={directory}"
        )
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)  # the spec's fields, plus what the converter adds (source, format)
    names = {f.name for f in dataclasses.fields(clip_lib.CLIPSpec)}
    return clip_lib.CLIPSpec.from_json({k: v for k, v in meta.items() if k in names})


def text_encoder(spec: ModelSpec) -> RNNEncoder | CLIPTextEncoder:
    """The DAMSM text encoder: the bi-LSTM (``RNN_ENCODER``) or CLIP's text tower."""
    if spec.text_encoder == "clip":
        return CLIPTextEncoder(
            clip=spec.clip,
            vocab_size=spec.vocab_size,
            emb_dim=spec.emb_dim,
            word_pieces=spec.clip_word_pieces,
            train_tower=spec.clip_text_trainable,
            dtype=spec.compute_dtype,
        )
    return RNNEncoder(
        vocab_size=spec.vocab_size,
        embed_dim=spec.word_embed_dim,
        hidden_dim=spec.emb_dim,
        dropout_rate=spec.damsm_dropout,
        dtype=spec.compute_dtype,
    )


def image_encoder(spec: ModelSpec) -> CNNEncoder:
    """The DAMSM image encoder (``CNN_ENCODER``: Inception-v3 or the small trunk, two heads)."""
    w = spec.small_trunk_width
    return CNNEncoder(
        nef=spec.emb_dim,
        trunk=spec.image_trunk,
        align_corners=spec.align_corners,
        small_widths=(w, 2 * w, 4 * w, 8 * w),
        small_spatial_global=spec.small_trunk_spatial,
        dtype=spec.compute_dtype,
    )


def init_encoders(spec: ModelSpec, rng: PRNGKey, image_size: int) -> tuple[PyTree, PyTree]:
    """Random ``(params {"text", "image"}, image batch_stats)`` of the two DAMSM encoders.

    Args:
        spec: the model spec.
        rng: key of the initialisation.
        image_size: the image encoder's input size (the largest stage's).
    """
    k_text, k_img = jax.random.split(rng)
    length = spec.words_num
    caps = jnp.ones((2, length), jnp.int32)
    lens = jnp.full((2,), length, jnp.int32)
    tv = text_encoder(spec).init({"params": k_text, "dropout": k_text}, caps, lens, train=False)
    iv = image_encoder(spec).init(k_img, jnp.zeros((2, image_size, image_size, 3)), train=False)
    return {"text": tv["params"], "image": iv["params"]}, iv.get("batch_stats", {})


# ----------------------------------------------------------------------------- GAN
def generator(spec: ModelSpec) -> Generator:
    """The generator (``G_NET``, or ``G_DCGAN`` with ``spec.dcgan``)."""
    return Generator(
        gf_dim=spec.gf_dim,
        emb_dim=spec.emb_dim,
        z_dim=spec.z_dim,
        condition_dim=spec.condition_dim,
        r_num=spec.r_num,
        num_stages=spec.num_stages,
        base_size=spec.base_size,
        dcgan=spec.dcgan,
        faithful_mask=spec.faithful_mask,
        dtype=spec.compute_dtype,
    )


def discriminators(spec: ModelSpec) -> dict[str, Discriminator]:
    """``{"d<i>": Discriminator}`` for every discriminated stage (only the last for AttnDCGAN)."""
    sizes = spec.stage_sizes
    ds = {}
    for i, s in enumerate(sizes):
        if spec.dcgan and i < len(sizes) - 1:
            continue
        ds[f"d{i}"] = Discriminator(
            df_dim=spec.df_dim,
            emb_dim=spec.emb_dim,
            image_size=s,
            uncond=not spec.dcgan,
            dtype=spec.compute_dtype,
        )
    return ds


def init_generator(spec: ModelSpec, rng: PRNGKey) -> PyTree:
    """The original's ``weights_init`` for G: orthogonal convs/linears, BN scales ~ N(1, 0.02).

    Returns:
        ``{"params", "batch_stats"}``.
    """
    gen = generator(spec)
    k_init, k_bn, k_ca = jax.random.split(rng, 3)
    b = 2
    z = jnp.zeros((b, gen.z_dim))
    sent = jnp.zeros((b, gen.emb_dim))
    words = jnp.zeros((b, spec.words_num, gen.emb_dim))
    mask = jnp.zeros((b, spec.words_num), bool)
    v = gen.init({"params": k_init, "ca": k_ca}, z, sent, words, mask, train=False)
    return {"params": perturb_batchnorm_scales(v["params"], k_bn), "batch_stats": v["batch_stats"]}


def init_discriminators(spec: ModelSpec, rng: PRNGKey) -> tuple[PyTree, PyTree]:
    """``(params, batch_stats)``, each a dict over :func:`discriminators`' names."""
    params, stats = {}, {}
    for i, (name, d) in enumerate(discriminators(spec).items()):
        v = init_discriminator(d, jax.random.fold_in(rng, i))
        params[name], stats[name] = v["params"], v["batch_stats"]
    return params, stats
