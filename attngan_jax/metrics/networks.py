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

Every network sees the generated images *quantised to uint8* (as if saved as PNG and read back, as
the published pipelines do). ``fid``/``torchvision``: ``x / 127.5 - 1`` resized bilinearly to
299x299 with ``align_corners=False`` (pytorch-fid's ``F.interpolate``; resizing commutes with its
``2x - 1``). ``stackgan``: PIL bilinear resize of the uint8 image to 299 (``scipy.misc.imresize``),
re-quantised, then ``x / 127.5 - 1``. The StackGAN network runs with TF-slim's pools
(``InceptionTrunk(tf_slim_pools=True)``: every padded average pool excludes the padding, Mixed_7c
included), derived from the TF op definitions; it was not compared with TensorFlow outputs here (no
TensorFlow and no checkpoint on our machines).
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
from attngan_jax.models.resize import resize_bilinear

KINDS = ("torchvision", "fid", "stackgan")

CONVENTIONS: dict[str, dict[str, str]] = {
    "fid": {
        "weights": "pytorch-fid pt_inception-2015-12-05 (TF Inception graph of 2015-12-05)",
        "fid_column": "TF-FID (TTUR / pytorch-fid default)",
        "is_protocol": "1008-way softmax of the 2015 graph, 10 splits (openai/improved-gan)",
        "resize": "uint8 -> x/127.5-1 -> bilinear 299x299, align_corners=False",
    },
    "torchvision": {
        "weights": "torchvision inception_v3 ImageNet weights (1000 classes)",
        "fid_column": "PyTorch FID (DM-GAN / DF-GAN / GALIP tables)",
        "is_protocol": "1000-way ImageNet softmax, 10 splits (not a published IS convention)",
        "resize": "uint8 -> x/127.5-1 -> bilinear 299x299, align_corners=False",
    },
    "stackgan": {
        "weights": "StackGAN CUB fine-tuned Inception-v3 (birds_valid299/model.ckpt, 51 logits)",
        "fid_column": "none (not an FID network)",
        "is_protocol": "StackGAN CUB: background logit dropped, full batches of 64, 10 splits",
        "resize": "uint8 -> PIL bilinear 299x299 (uint8) -> x/127.5-1; torchvision pools (approx.)",
    },
}


class EvalInceptionNet(nn.Module):
    """Inception-v3 trunk + optional ``fc``: (B, H, W, 3) in [-1, 1] -> (pool3, logits).

    Variables are laid out as :class:`~attngan_jax.models.inception.InceptionClassifier`'s
    (``inception/...``, ``fc``), so the torchvision converters fill them.

    Attributes:
        num_classes: logits of ``fc`` (0: no classifier head, features only).
        fid_variant: pytorch-fid's pools (the 2015 TF graph).
        resize: bilinear resize to 299x299 (``align_corners=False``) inside the network.
        dtype: computation dtype.
    """

    num_classes: int = 1000
    fid_variant: bool = False
    resize: bool = True
    dtype: Any = None
    tf_slim_pools: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Returns ``(pool3 (B, 2048) float32, logits (B, num_classes) float32 or None)``."""
        if self.resize and x.shape[1:3] != (299, 299):
            x = resize_bilinear(x, (299, 299), align_corners=False)  # (B, 299, 299, 3)
        trunk = InceptionTrunk(
            self.fid_variant, self.dtype, tf_slim_pools=self.tf_slim_pools, name="inception"
        )
        _, pooled = trunk(x, False)
        pooled = pooled.astype(jnp.float32)
        if not self.num_classes:
            return pooled, None
        logits = nn.Dense(self.num_classes, param_dtype=jnp.float32, name="fc")(pooled)
        return pooled, logits.astype(jnp.float32)


@dataclasses.dataclass
class EvalInception:
    """A loaded evaluation network.

    Attributes:
        kind: ``torchvision`` | ``fid`` | ``stackgan``.
        path: the weights file (or TF checkpoint prefix).
        module: the :class:`EvalInceptionNet`.
        variables: its ``{"params", "batch_stats"}``.
        num_classes: logits per image (0: the file has no classifier, no IS).
    """

    kind: str
    path: str
    module: EvalInceptionNet
    variables: Any
    num_classes: int

    def __post_init__(self):
        self._apply = jax.jit(lambda v, x: self.module.apply(v, x))

    @property
    def convention(self) -> dict[str, Any]:
        """What a number made with this network is (written into the metrics JSON)."""
        return {"kind": self.kind, "path": self.path, "num_classes": self.num_classes,
                **CONVENTIONS[self.kind]}  # fmt: skip

    def preprocess(self, images_uint8: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, H', W', 3) float32 network input in [-1, 1]."""
        x = np.asarray(images_uint8)
        if self.kind == "stackgan" and x.shape[1:3] != (299, 299):
            x = np.stack([
                np.asarray(Image.fromarray(im).resize((299, 299), Image.Resampling.BILINEAR))
                for im in x
            ])  # fmt: skip
        return x.astype(np.float32) / 127.5 - 1.0

    def __call__(self, images_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Pool3 features (B, 2048) and logits (B, C) (None without a classifier), as numpy."""
        pool, logits = self._apply(self.variables, jnp.asarray(self.preprocess(images_uint8)))
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


def load_eval_inception(path: str, kind: str = "auto", dtype: Any = None) -> EvalInception:
    """Loads IS/FID Inception weights.

    Args:
        path: ``.pth``/``.npz`` (torch keys) or a TF1 checkpoint prefix (StackGAN).
        kind: ``auto`` (from the file) or one of :data:`KINDS`.
        dtype: computation dtype (None: float32).

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
    has_fc = "fc.weight" in sd
    classes = int(np.shape(sd["fc.weight"])[0]) if has_fc else 0
    module = EvalInceptionNet(
        num_classes=classes,
        fid_variant=kind == "fid",
        resize=kind != "stackgan",
        dtype=dtype,
        tf_slim_pools=kind == "stackgan",
    )
    expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    if has_fc:
        variables = convert_torchvision_inception(sd, expected, source=path)
    else:
        variables = convert_fid_inception(sd, expected, source=path)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    return EvalInception(kind, path, module, variables, classes)
