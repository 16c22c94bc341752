"""PyTorch Inception-v3 state dicts -> Flax variables (image encoder, IS classifier, FID network).

Key mapping (torch -> Flax, every Inception module lives under the Flax submodule ``inception``):

* ``<unit>.conv.weight`` (O, I, kh, kw) -> ``params/inception/<unit>/conv/kernel`` (kh, kw, I, O),
  where ``<unit>`` is a stem conv (``Conv2d_2b_3x3``) or ``<block>.<branch>``
  (``Mixed_6e.branch_pool`` -> ``Mixed_6e/branch_pool``); the 94 units are
  :data:`~attngan_jax.models.inception.TRUNK_LAYOUT`.
* ``<unit>.bn.{weight,bias}`` -> ``params/inception/<unit>/bn/{scale,bias}``;
  ``<unit>.bn.running_{mean,var}`` -> ``batch_stats/inception/<unit>/bn/{mean,var}``;
  ``num_batches_tracked`` is optional (absent from PyTorch-0.3 files) and ignored.
* CNN_ENCODER heads: ``emb_features.weight`` (nef, 768, 1, 1) -> ``params/emb_features/kernel``;
  ``emb_cnn_code.{weight,bias}`` -> ``params/emb_cnn_code/{kernel,bias}``.
* torchvision classifier: ``fc.{weight,bias}`` -> ``params/fc/{kernel,bias}``; ``AuxLogits.*``
  is ignored (the auxiliary head is a training-time regulariser).
* pytorch-fid ``InceptionV3`` keys ``blocks.<i>.<j>.<rest>`` are first renamed to torchvision keys
  by :func:`fid_key_to_torchvision_key`.

When the expected module (or its ``jax.eval_shape``'d variables) is given, every tensor is checked
in torch layout as it is read, so an error names the torch key, both shapes and the likely cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax.convert.common import (
    ConversionError,
    StateDictReader,
    _flatten,
    check_against,
    put,
)
from attngan_jax.models.inception import TRUNK_LAYOUT

PyTree = Any

# pytorch-fid's nn.ModuleList of nn.Sequential blocks (the max/avg pools have no parameters).
FID_BLOCKS: tuple[tuple[str, ...], ...] = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"),
    ("Conv2d_3b_1x1", "Conv2d_4a_3x3"),
    (
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
    ),
    ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
)


def fid_key_to_torchvision_key(key: str) -> str:
    """Renames a pytorch-fid ``InceptionV3`` key to torchvision's (other keys are returned as is).

    ``blocks.<i>.<j>.<rest>`` -> ``FID_BLOCKS[i][j].<rest>``, e.g.
    ``blocks.2.7.branch_pool.conv.weight`` -> ``Mixed_6e.branch_pool.conv.weight``.

    Raises:
        ConversionError: ``i``/``j`` do not name a block with parameters.
    """
    if not key.startswith("blocks."):
        return key
    parts = key.split(".", 3)
    try:
        i, j, rest = int(parts[1]), int(parts[2]), parts[3]
        return f"{FID_BLOCKS[i][j]}.{rest}"
    except (IndexError, ValueError) as e:
        raise ConversionError(f"'{key}' is not a pytorch-fid InceptionV3 parameter key") from e


class _Writer:
    """Reads torch tensors into a Flax variable tree, checking shapes against the module's."""

    def __init__(self, reader: StateDictReader, expected: Mapping | None):
        self.reader = reader
        self.expected = expected
        self.want = _flatten(expected) if expected is not None else None
        self.variables: dict = {}

    def _torch_shape(self, path: tuple[str, ...], layout: str) -> tuple[int, ...] | None:
        if self.want is None or path not in self.want:
            return None  # missing/extra leaves are reported by check_against
        s = tuple(self.want[path].shape)
        if layout == "conv":  # (kh, kw, I, O) -> (O, I, kh, kw)
            return (s[3], s[2], s[0], s[1])
        if layout == "dense":  # (in, out) -> (out, in)
            return (s[1], s[0])
        return s

    def tensor(self, path: tuple[str, ...], key: str, layout: str = "vector") -> None:
        a = self.reader.raw(key, self._torch_shape(path, layout))
        if layout == "conv":
            a = a.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
        elif layout == "dense":
            a = a.T  # (out, in) -> (in, out)
        put(self.variables, path, a)

    def basic_conv(self, path: tuple[str, ...], key: str) -> None:
        """A torchvision BasicConv2d ``key`` (conv + bn) at Flax module ``path``."""
        self.tensor(("params", *path, "conv", "kernel"), key + ".conv.weight", "conv")
        for torch_name, collection, name in (
            ("weight", "params", "scale"),
            ("bias", "params", "bias"),
            ("running_mean", "batch_stats", "mean"),
            ("running_var", "batch_stats", "var"),
        ):
            self.tensor((collection, *path, "bn", name), f"{key}.bn.{torch_name}")

    def trunk(self, module: str = "inception") -> None:
        """All 94 BasicConv2d units of the Inception trunk under Flax module ``module``."""
        for block, units in TRUNK_LAYOUT:
            if not units:
                self.basic_conv((module, block), block)
            for u in units:
                self.basic_conv((module, block, u), f"{block}.{u}")

    def finish(self, ignore=None) -> dict:
        self.reader.finish(ignore)
        if self.want is not None:
            check_against(self.variables, self.expected, self.reader.source)
        return self.variables


def _expected(module_or_expected: Any, example: np.ndarray) -> Mapping | None:
    """Shapes of the module's variables (via ``jax.eval_shape``), or a given shape tree, or None."""
    if module_or_expected is None or isinstance(module_or_expected, Mapping):
        return module_or_expected
    return jax.eval_shape(
        module_or_expected.init, jax.random.key(0), jnp.zeros(example, jnp.float32)
    )


def convert_image_encoder(
    state_dict: Mapping[str, Any], module_or_expected: Any = None, source: str = "<image_encoder>"
) -> dict:
    """Converts a ``CNN_ENCODER`` state dict (``image_encoder200.pth``; 473 tensors, ref. §15.4).

    Args:
        state_dict: torch key -> tensor/array.
        module_or_expected: a ``CNNEncoder(trunk="inception")`` or its ``eval_shape``'d variables,
            to check every shape (e.g. a wrong ``nef``); None skips the module check.
        source: name for error messages (usually the file path).

    Returns:
        ``{"params": ..., "batch_stats": ...}`` (numpy leaves) for ``CNNEncoder``.

    Raises:
        ConversionError: missing, unused or mis-shaped tensors (naming the key and both shapes).
    """
    w = _Writer(
        StateDictReader(state_dict, source), _expected(module_or_expected, (1, 299, 299, 3))
    )
    w.trunk()
    w.tensor(("params", "emb_features", "kernel"), "emb_features.weight", "conv")
    w.tensor(("params", "emb_cnn_code", "kernel"), "emb_cnn_code.weight", "dense")
    w.tensor(("params", "emb_cnn_code", "bias"), "emb_cnn_code.bias")
    return w.finish()


def convert_torchvision_inception(
    state_dict: Mapping[str, Any], module_or_expected: Any = None, source: str = "<inception_v3>"
) -> dict:
    """Converts a torchvision ``inception_v3`` state dict for :class:`InceptionClassifier`.

    Works for torchvision's ImageNet weights (1000 classes) and for pytorch-fid's
    ``pt_inception-2015-12-05`` file (1008 classes; use ``fid_variant=True``). ``AuxLogits.*`` is
    ignored.

    Args:
        state_dict: torch key -> tensor/array.
        module_or_expected: the classifier module or its variable shapes (None: no module check).
        source: name for error messages.

    Returns:
        ``{"params": {"inception": ..., "fc": ...}, "batch_stats": {"inception": ...}}``.
    """
    w = _Writer(
        StateDictReader(state_dict, source), _expected(module_or_expected, (1, 299, 299, 3))
    )
    w.trunk()
    w.tensor(("params", "fc", "kernel"), "fc.weight", "dense")
    w.tensor(("params", "fc", "bias"), "fc.bias")
    return w.finish(ignore=lambda k: k.startswith("AuxLogits."))


def convert_inception_trunk(
    state_dict: Mapping[str, Any], expected: Mapping | None = None, source: str = "<inception_v3>"
) -> dict:
    """Converts the 94 trunk units of a torchvision ``inception_v3`` state dict, nothing else.

    The DAMSM image encoder's frozen trunk starts from torchvision's ImageNet weights
    (``inception_v3_google-*.pth``, reference §4); ``fc.*`` and ``AuxLogits.*`` are ignored.

    Args:
        state_dict: torch key -> tensor/array.
        expected: ``{"params": {"inception": ...}, "batch_stats": {"inception": ...}}`` shapes
            (e.g. from ``jax.eval_shape``) to check every tensor; None skips the check.
        source: name for error messages (usually the file path).

    Returns:
        ``{"params": {"inception": ...}, "batch_stats": {"inception": ...}}`` (numpy leaves).

    Raises:
        ConversionError: missing, unused or mis-shaped tensors (naming the key and both shapes).
    """
    w = _Writer(StateDictReader(state_dict, source), expected)
    w.trunk()
    return w.finish(ignore=lambda k: k.startswith(("AuxLogits.", "fc.")))


def convert_fid_inception(
    state_dict: Mapping[str, Any], module_or_expected: Any = None, source: str = "<fid_inception>"
) -> dict:
    """Converts FID Inception weights for :class:`FIDInceptionV3`.

    Accepts either torchvision keys (e.g. ``pt_inception-2015-12-05-6726825d.pth``, whose
    ``fc.*`` is ignored, as is ``AuxLogits.*``) or a pytorch-fid ``InceptionV3.state_dict()``
    (``blocks.<i>.<j>...``, renamed with :func:`fid_key_to_torchvision_key`).

    Args:
        state_dict: torch key -> tensor/array.
        module_or_expected: the FID module or its variable shapes (None: no module check).
        source: name for error messages.

    Returns:
        ``{"params": {"inception": ...}, "batch_stats": {"inception": ...}}``.
    """
    renamed: dict[str, Any] = {}
    for k, v in state_dict.items():
        tv = fid_key_to_torchvision_key(k)
        if tv in renamed:
            raise ConversionError(f"{source}: '{k}' and another key both map to '{tv}'")
        renamed[tv] = v
    return convert_inception_trunk(renamed, _expected(module_or_expected, (1, 299, 299, 3)), source)
