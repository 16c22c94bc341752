"""``D_NET64/128/256`` state dicts (``netD<i>.pth``, ref. §15.2) -> ``Discriminator`` variables.

Key mapping (torch key -> Flax path under ``params`` / ``batch_stats``)::

    img_code_s16.{0,2,5,8}.weight        -> img_code_s16/conv{0,2,5,8}/kernel
    img_code_s16.{3,6,9}.*               -> img_code_s16/bn{3,6,9}/{scale,bias | mean,var}
    img_code_s32.0.weight ; .1.*         -> img_code_s32/conv/kernel ; /bn     (D_NET128, 256)
    img_code_s32_1.0.weight ; .1.*       -> img_code_s32_1/conv/kernel ; /bn   (D_NET128)
    img_code_s64{,_1,_2}.0.weight ; .1.* -> img_code_s64{,_1,_2}/conv ; /bn    (D_NET256)
    UNCOND_DNET.outlogits.0.{weight,bias}-> UNCOND_DNET/outlogits/{kernel,bias}       (uncond only)
    COND_DNET.jointConv.0.weight ; .1.*  -> COND_DNET/jointConv/conv/kernel ; /bn
    COND_DNET.outlogits.0.{weight,bias}  -> COND_DNET/outlogits/{kernel,bias}

Conv weights (O, I, kh, kw) become Flax kernels (kh, kw, I, O); BatchNorm weight/bias ->
scale/bias, running_mean/var -> batch_stats mean/var; ``num_batches_tracked`` (absent from
PyTorch-0.3 files) is ignored. ``prefix`` selects one D inside a bigger dict (``"netsD.1."`` for
an ``nn.ModuleList`` of Ds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from attngan_jax.convert.common import (
    StateDictReader,
    check_against,
    put,
    put_batchnorm,
)
from attngan_jax.models.discriminator import Discriminator, dummy_inputs


def expected_variables(module: Discriminator) -> Any:
    """Shapes of the module's variables (``jax.eval_shape``, nothing is materialised)."""
    images, sent = dummy_inputs(module)
    return jax.eval_shape(
        lambda: module.init(jax.random.key(0), images, sent, False, method=Discriminator.all_logits)
    )


def _conv(
    variables: dict, reader: StateDictReader, expected: Any, path: tuple[str, ...], key: str
) -> None:
    """Copies conv weight ``key`` to ``params/path/kernel``, checking the torch shape first."""
    node = expected["params"]
    for p in path:
        node = node[p]
    kh, kw, i, o = node["kernel"].shape
    w = reader.raw(key, shape=(o, i, kh, kw))  # raises naming the key, both shapes and DF_DIM
    put(variables, ("params", *path, "kernel"), w.transpose(2, 3, 1, 0))


def _block(variables: dict, reader: StateDictReader, expected: Any, name: str) -> None:
    """A ``downBlock`` / ``Block3x3_leakRelu``: ``name.0`` conv, ``name.1`` BatchNorm."""
    _conv(variables, reader, expected, (name, "conv"), f"{name}.0.weight")
    put_batchnorm(variables, (name, "bn"), reader, f"{name}.1")


def _head(variables: dict, reader: StateDictReader, expected: Any, name: str, cond: bool) -> None:
    if cond:
        _conv(
            variables, reader, expected, (name, "jointConv", "conv"), f"{name}.jointConv.0.weight"
        )
        put_batchnorm(variables, (name, "jointConv", "bn"), reader, f"{name}.jointConv.1")
    _conv(variables, reader, expected, (name, "outlogits"), f"{name}.outlogits.0.weight")
    put(
        variables,
        ("params", name, "outlogits", "bias"),
        reader.raw(f"{name}.outlogits.0.bias", (1,)),
    )


def convert_discriminator(
    state_dict: Mapping[str, Any],
    module: Discriminator,
    source: str = "<state_dict>",
    prefix: str = "",
) -> dict:
    """Converts one discriminator's torch state dict into ``{"params", "batch_stats"}``.

    Args:
        state_dict: torch key -> array (e.g. from :func:`attngan_jax.convert.load_state_dict`).
        module: the target (its ``df_dim``, ``emb_dim``, ``image_size`` and ``uncond`` must match
            the checkpoint; D_NET64/128/256 = image_size 64/128/256, AttnDCGAN's D has
            ``uncond=False``).
        source: name for error messages (the file path).
        prefix: key prefix of this D inside ``state_dict`` (``"netsD.0."``), or ``""``.

    Returns:
        Float32 numpy variables with the module's tree structure.

    Raises:
        ConversionError: a key is missing (e.g. ``UNCOND_DNET`` for a ``uncond=False`` file), has a
            different shape (wrong DF_DIM / EMBEDDING_DIM), or is left unused (wrong image_size).
    """
    reader = StateDictReader(state_dict, source, prefix)
    expected = expected_variables(module)
    v: dict = {}
    _conv(v, reader, expected, ("img_code_s16", "conv0"), "img_code_s16.0.weight")
    for i in (2, 5, 8):
        _conv(v, reader, expected, ("img_code_s16", f"conv{i}"), f"img_code_s16.{i}.weight")
        put_batchnorm(v, ("img_code_s16", f"bn{i + 1}"), reader, f"img_code_s16.{i + 1}")
    if module.image_size == 128:
        for name in ("img_code_s32", "img_code_s32_1"):
            _block(v, reader, expected, name)
    elif module.image_size == 256:
        for name in ("img_code_s32", "img_code_s64", "img_code_s64_1", "img_code_s64_2"):
            _block(v, reader, expected, name)
    if module.uncond:
        _head(v, reader, expected, "UNCOND_DNET", cond=False)
    _head(v, reader, expected, "COND_DNET", cond=True)
    reader.finish()
    check_against(v, expected, source)
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), v)
