"""The Inception networks behind IS and FID, loaded from user-supplied weights (none can be downloaded).

Three weight files are accepted; each fixes a convention, and numbers are only comparable with
numbers made the same way (``docs/evaluation.md``, reference evaluation.md §4):

=============  ==========================================  ==========================================
kind           file                                        what it gives
=============  ==========================================  ==========================================
``fid``        pytorch-fid ``pt_inception-2015-12-05-*.pth``  FID = **TF-FID** (TTUR, the 2015-12-05
               (torchvision keys, 1008-way ``fc``) or a    graph's pool_3); IS = the 1008-way softmax
               pytorch-fid ``InceptionV3.state_dict()``     of openai/improved-gan (COCO IS). FID
               (``blocks.*`` keys, no ``fc``: no IS)        blocks: count_include_pad=False, 7c max pool
``torchvision`` torchvision ``inception_v3_google-*.pth``   FID = the **"PyTorch FID"** column of the
               (1000 classes)                              DM-GAN / DF-GAN / GALIP tables; IS over
                                                           1000 ImageNet classes (not a paper number)
``stackgan``   StackGAN ``inception_finetuned_models/      IS = the **CUB IS** of the StackGAN /
               birds_valid299/model.ckpt`` (TF1 prefix),   AttnGAN papers (51 logits, background
               or its conversion saved as ``.npz``         dropped, full batches of 64); no FID
=============  ==========================================  ==========================================

How an image reaches the network is a :class:`Pipeline` (quantisation, PIL resize, scaling, float
resize). Each kind has a default (:data:`DEFAULT_PIPELINES`, what ``eval.py`` does without a
``--protocol``): the generated images are *quantised to uint8* by rounding (as if saved as PNG and
read back). ``fid``/``torchvision``: ``x / 127.5 - 1`` resized bilinearly to 299x299 with
``align_corners=False`` (pytorch-fid's ``F.interpolate``; resizing commutes with its ``2x - 1``).
``stackgan``: PIL bilinear resize of the uint8 image to 299 (``scipy.misc.imresize``),
re-quantised, then ``x / 127.5 - 1``. The published pipelines differ from these defaults in ways
that move the numbers (DM-GAN's "PyTorch FID" feeds ``u * std / 0.5 + (mean - 0.5) / 0.5`` of
``u`` in [0, 1]; TTUR and improved-gan feed 0..255 to the 2015 graph, which resizes with TF 1.x's
legacy bilinear kernel and scales ``(x - 128) / 128``; improved-gan's IS drops the ``fc`` bias):
the presets of :mod:`attngan_jax.eval.protocols` choose them. The StackGAN network runs with
TF-slim's pools (``InceptionTrunk(tf_slim_pools=True)``: every padded average pool excludes the
padding, Mixed_7c included), derived from the TF op definitions; it was not compared with
TensorFlow outputs here (no TensorFlow and no checkpoint on our machines).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from attngan_jax.convert.common import ConversionError
from attngan_jax.convert.inception import convert_fid_inception, convert_torchvision_inception
from attngan_jax.errors import InputError, MissingInputError
from attngan_jax.models.inception import InceptionTrunk
from attngan_jax.models.resize import resize_bilinear, resize_bilinear_tf1
from attngan_jax.visualize import to_uint8

KINDS = ("torchvision", "fid", "stackgan")

CONVENTIONS: dict[str, dict[str, str]] = {
    "fid": {
        "weights": "pytorch-fid pt_inception-2015-12-05 (TF Inception graph of 2015-12-05)",
        "fid_column": "pytorch-fid's port of TF-FID (TTUR's exact input: --protocol=ttur_tf_fid)",
        "is_protocol": "1008-way softmax of the 2015 graph, 10 splits (openai/improved-gan)",
    },
    "torchvision": {
        "weights": "torchvision inception_v3 ImageNet weights (1000 classes)",
        "fid_column": (
            "torchvision-Inception FID with x/127.5-1 input; NOT the 'PyTorch FID' column of "
            "DM-GAN / DF-GAN (their input: --protocol=dmgan_pytorch_fid or dfgan)"
        ),
        "is_protocol": "1000-way ImageNet softmax, 10 splits (not a published IS convention)",
    },
    "stackgan": {
        "weights": "StackGAN CUB fine-tuned Inception-v3 (birds_valid299/model.ckpt, 51 logits)",
        "fid_column": "none (not an FID network)",
        "is_protocol": "StackGAN CUB: background logit dropped, full batches of 64, 10 splits",
    },
}

QUANTISE = ("round", "truncate", "none")
SCALES = ("minus1_1", "imagenet_on_unit", "tf_graph")
FLOAT_RESIZES = ("half_pixel", "tf1", "none")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """How generated images (float, [-1, 1]) become the network's 299x299 input, step by step.

    1. ``quantise``: ``round`` (``visualize.to_uint8``: round half to even, clip), ``truncate``
       (``((x + 1) * 127.5).astype(uint8)``, how AttnGAN/DM-GAN/DF-GAN save PNG files) or ``none``
       (the float image, as DF-GAN's in-loop FID).
    2. ``pil_resize``: PIL bilinear resize of the uint8 image to 299x299, uint8 result
       (torchvision ``Resize((299, 299))`` on a PIL image; ``scipy.misc.imresize``).
    3. ``scale`` of ``v`` = the 0..255 value (``(x + 1) * 127.5`` without quantisation):
       ``minus1_1``: ``v / 127.5 - 1``; ``imagenet_on_unit``: ``u * std / 0.5 + (mean - 0.5) / 0.5``
       with ``u = v / 255`` (DM-GAN/DF-GAN ``InceptionV3(normalize_input=True)``: torchvision's
       ``transform_input`` formula applied to [0, 1] input); ``tf_graph``: ``(v - 128) / 128``
       (the 2015 graph's ``Sub``/``Mul``).
    4. ``float_resize`` to 299x299 inside the network: ``half_pixel`` (torch ``F.interpolate``,
       ``align_corners=False``), ``tf1`` (TF 1.x legacy ``ResizeBilinear``) or ``none``. Bilinear
       rows sum to one, so resizing after the affine scale equals resizing before it (DF-GAN
       resizes ``(x + 1) / 2``, TF resizes 0..255) up to float rounding (~1e-6).
    """

    quantise: str = "round"
    pil_resize: bool = False
    scale: str = "minus1_1"
    float_resize: str = "half_pixel"

    def __post_init__(self):
        for name, allowed in (("quantise", QUANTISE), ("scale", SCALES),
                              ("float_resize", FLOAT_RESIZES)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(f"Pipeline.{name}={getattr(self, name)!r}: one of {allowed}")

    @property
    def tag(self) -> str:
        """A short name for file names (e.g. the cached reference statistics)."""
        return "-".join([self.quantise, "pil" if self.pil_resize else "nopil", self.scale,
                         self.float_resize])  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """The steps in words (written into the metrics JSON)."""
        q = {"round": "round((x + 1) * 127.5) to uint8 (clipped)",
             "truncate": "((x + 1) * 127.5).astype(uint8) (truncation, as saved PNG files)",
             "none": "none (float images)"}[self.quantise]  # fmt: skip
        sc = {"minus1_1": "v / 127.5 - 1",
              "imagenet_on_unit": "u * std / 0.5 + (mean - 0.5) / 0.5, u = v / 255, "
                                  f"mean {_IMAGENET_MEAN}, std {_IMAGENET_STD}",
              "tf_graph": "(v - 128) / 128"}[self.scale]  # fmt: skip
        rs = {"half_pixel": "bilinear to 299x299, align_corners=False (torch F.interpolate)",
              "tf1": "bilinear to 299x299, TF 1.x legacy ResizeBilinear (src = dst * in / out)",
              "none": "none"}[self.float_resize]  # fmt: skip
        return {
            "quantise": q,
            "pil_resize": "PIL bilinear to 299x299, uint8" if self.pil_resize else "none",
            "scale": sc,
            "float_resize": rs,
            "tag": self.tag,
        }

    def to_input(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) float in [-1, 1], or uint8 already quantised -> scaled float32 input.

        Args:
            images: generated float images in [-1, 1] (quantised here), or uint8 images (the
                quantisation step is then skipped).

        Returns:
            (B, H', W', 3) float32: 299x299 after a PIL resize, else the input size (the network
            resizes).
        """
        x = np.asarray(images)
        if x.dtype != np.uint8:
            x = np.asarray(x, np.float32)
            if self.quantise == "round":
                x = to_uint8(x)
            elif self.quantise == "truncate":
                x = ((x + 1.0) * 127.5).astype(np.uint8)
        if self.pil_resize and x.shape[1:3] != (299, 299):
            if x.dtype != np.uint8:
                raise ValueError("pil_resize needs quantised (uint8) images")
            x = np.stack([
                np.asarray(Image.fromarray(im).resize((299, 299), Image.Resampling.BILINEAR))
                for im in x
            ])  # fmt: skip
        v = x.astype(np.float32) if x.dtype == np.uint8 else (x + 1.0) * np.float32(127.5)
        if self.scale == "minus1_1":
            return v / np.float32(127.5) - np.float32(1.0)
        if self.scale == "tf_graph":
            return (v - np.float32(128.0)) / np.float32(128.0)
        u = v / np.float32(255.0)
        std = np.asarray(_IMAGENET_STD, np.float32) / np.float32(0.5)
        shift = (np.asarray(_IMAGENET_MEAN, np.float32) - np.float32(0.5)) / np.float32(0.5)
        return (u * std + shift).astype(np.float32)


DEFAULT_PIPELINES = {
    "fid": Pipeline(),
    "torchvision": Pipeline(),
    "stackgan": Pipeline(pil_resize=True, float_resize="none"),
}


class EvalInceptionNet(nn.Module):
    """Inception-v3 trunk + optional ``fc``: (B, H, W, 3) scaled input -> (pool3, logits).

    Variables are laid out as :class:`~attngan_jax.models.inception.InceptionClassifier`'s
    (``inception/...``, ``fc``), so the torchvision converters fill them.

    Attributes:
        num_classes: logits of ``fc`` (0: no classifier head, features only).
        fid_variant: pytorch-fid's pools (the 2015 TF graph).
        resize: bilinear resize to 299x299 inside the network.
        dtype: computation dtype.
        tf_slim_pools: TF-slim's average pools (the StackGAN network).
        tf1_resize: resize as TF 1.x ``ResizeBilinear`` (else torch's ``align_corners=False``).
        fc_bias: add ``fc``'s bias to the logits. improved-gan's IS and torch-fidelity's
            ``logits_unbiased`` use ``pool3 @ W`` without it (the bias stays a parameter).
    """

    num_classes: int = 1000
    fid_variant: bool = False
    resize: bool = True
    dtype: Any = None
    tf_slim_pools: bool = False
    tf1_resize: bool = False
    fc_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Returns ``(pool3 (B, 2048) float32, logits (B, num_classes) float32 or None)``."""
        if self.resize and x.shape[1:3] != (299, 299):
            if self.tf1_resize:
                x = resize_bilinear_tf1(x, (299, 299))  # (B, 299, 299, 3)
            else:
                x = resize_bilinear(x, (299, 299), align_corners=False)  # (B, 299, 299, 3)
        trunk = InceptionTrunk(
            self.fid_variant, self.dtype, tf_slim_pools=self.tf_slim_pools, name="inception"
        )
        _, pooled = trunk(x, False)
        pooled = pooled.astype(jnp.float32)
        if not self.num_classes:
            return pooled, None
        fc = nn.Dense(self.num_classes, param_dtype=jnp.float32, name="fc")
        logits = fc(pooled)
        if not self.fc_bias:  # improved-gan: tf.matmul(pool3, softmax/logits/MatMul weights)
            logits = pooled @ fc.variables["params"]["kernel"]  # (B, num_classes)
        return pooled, logits.astype(jnp.float32)


@dataclasses.dataclass
class EvalInception:
    """A loaded evaluation network with the pipeline that feeds it.

    Attributes:
        kind: ``torchvision`` | ``fid`` | ``stackgan``.
        path: the weights file (or TF checkpoint prefix).
        module: the :class:`EvalInceptionNet`.
        variables: its ``{"params", "batch_stats"}``.
        num_classes: logits per image (0: the file has no classifier, no IS).
        pipeline: how images become the network input (default: the kind's).
    """

    kind: str
    path: str
    module: EvalInceptionNet
    variables: Any
    num_classes: int
    pipeline: Pipeline | None = None

    def __post_init__(self):
        if self.pipeline is None:
            self.pipeline = DEFAULT_PIPELINES[self.kind]
        self._apply = jax.jit(lambda v, x: self.module.apply(v, x))

    @property
    def convention(self) -> dict[str, Any]:
        """What a number made with this network is (written into the metrics JSON)."""
        return {"kind": self.kind, "path": self.path, "num_classes": self.num_classes,
                **CONVENTIONS[self.kind], "pipeline": self.pipeline.describe(),
                "logits": "pool3 @ W + b" if self.module.fc_bias else "pool3 @ W (no fc bias)",
                }  # fmt: skip

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8, or float in [-1, 1] -> (B, H', W', 3) float32 network input."""
        return self.pipeline.to_input(images)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Pool3 features (B, 2048) and logits (B, C) (None without a classifier), as numpy.

        Args:
            images: (B, H, W, 3) uint8 (already quantised), or float in [-1, 1] (quantised by
                the pipeline's rule).
        """
        pool, logits = self._apply(self.variables, jnp.asarray(self.preprocess(images)))
        return np.asarray(pool), None if logits is None else np.asarray(logits)


def _is_tf_checkpoint(path: str) -> bool:
    if path.endswith((".pth", ".pt", ".npz")):
        return False
    return os.path.exists(path + ".index") or os.path.isfile(path)


def detect_kind(state_dict: dict[str, np.ndarray], source: str = "<state_dict>") -> str:
    """``fid`` / ``torchvision`` / ``stackgan`` from a torch-keyed state dict's keys and fc size."""
    if any(k.startswith("blocks.") for k in state_dict):
        return "fid"
    classes = np.shape(state_dict["fc.weight"])[0] if "fc.weight" in state_dict else None
    kind = {1008: "fid", 1000: "torchvision", 51: "stackgan"}.get(classes)
    if kind is None:
        raise ConversionError(
            f"{source}: cannot tell which Inception this is (fc has {classes} classes; expected 1008 "
            "pytorch-fid 2015, 1000 torchvision or 51 StackGAN CUB): pass --inception_kind"
        )
    return kind


def load_eval_inception(
    path: str,
    kind: str = "auto",
    dtype: Any = None,
    pipeline: Pipeline | None = None,
    fc_bias: bool = True,
) -> EvalInception:
    """Loads IS/FID Inception weights.

    Args:
        path: ``.pth``/``.npz`` (torch keys) or a TF1 checkpoint prefix (StackGAN).
        kind: ``auto`` (from the file) or one of :data:`KINDS`.
        dtype: computation dtype (None: float32).
        pipeline: how images reach the network (None: :data:`DEFAULT_PIPELINES` of the kind).
        fc_bias: add the ``fc`` bias to the logits (False: improved-gan's ``pool3 @ W``).

    Returns:
        The :class:`EvalInception`.

    Raises:
        MissingInputError: nothing at ``path`` (a ``FileNotFoundError``).
        ConversionError: the weights do not fit the chosen network (naming the key and shapes).
    """
    if not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise MissingInputError(
            f"Inception weights not found: {path} (a .pth/.npz file or a TF checkpoint prefix)"
        )
    if kind not in ("auto", *KINDS):
        raise InputError(f"--inception_kind={kind}: use auto or one of {', '.join(KINDS)}")
    if _is_tf_checkpoint(path):
        from attngan_jax.metrics.stackgan_inception import load_stackgan_inception

        sd = load_stackgan_inception(path)
        kind = "stackgan" if kind == "auto" else kind
    else:
        from attngan_jax.convert.torch_io import load_state_dict

        sd = load_state_dict(path)
        kind = detect_kind(sd, path) if kind == "auto" else kind
    pipeline = DEFAULT_PIPELINES[kind] if pipeline is None else pipeline
    has_fc = "fc.weight" in sd
    classes = int(np.shape(sd["fc.weight"])[0]) if has_fc else 0
    module = EvalInceptionNet(
        num_classes=classes,
        fid_variant=kind == "fid",
        resize=pipeline.float_resize != "none",
        dtype=dtype,
        tf_slim_pools=kind == "stackgan",
        tf1_resize=pipeline.float_resize == "tf1",
        fc_bias=fc_bias,
    )
    expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    if has_fc:
        variables = convert_torchvision_inception(sd, expected, source=path)
    else:
        variables = convert_fid_inception(sd, expected, source=path)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    return EvalInception(kind, path, module, variables, classes, pipeline)
