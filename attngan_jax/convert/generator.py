"""``G_NET`` / ``G_DCGAN`` state dicts (reference §15.1) -> :class:`Generator` variables.

Key mapping (torch -> Flax, ``P`` = params, ``S`` = batch_stats; BN = ``weight, bias,
running_mean, running_var`` -> ``P:scale, P:bias, S:mean, S:var``):

====================================================  ============================================
``ca_net.fc.weight / .bias``                          ``ca_net/fc/kernel`` (transposed) / ``bias``
``h_net1.fc.0.weight``                                ``h_net1/fc/kernel`` (transposed)
``h_net1.fc.1.*`` (BatchNorm1d)                       ``h_net1/fc_bn``
``h_net1.upsample{k}.1.weight`` ; ``.2.*``            ``h_net1/upsample{k}/conv/kernel`` ; ``bn``
``img_net{i}.img.0.weight`` (``img_net`` for DCGAN)   ``img_net{i}/img/kernel``
``h_net{i}.att.conv_context.weight``                  ``h_net{i}/att/conv_context/kernel``
``h_net{i}.residual.{j}.block.0.weight`` ; ``.1.*``   ``h_net{i}/residual_{j}/conv1`` ; ``bn1``
``h_net{i}.residual.{j}.block.3.weight`` ; ``.4.*``   ``h_net{i}/residual_{j}/conv2`` ; ``bn2``
``h_net{i}.upsample.1.weight`` ; ``.2.*``             ``h_net{i}/upsample/conv/kernel`` ; ``bn``
====================================================  ============================================

Conv weights (O, I, kh, kw) become (kh, kw, I, O), linear weights (out, in) become (in, out).
Every tensor is read with the torch shape the module expects, so a mismatch names the torch key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from attngan_jax.convert.common import (
    ConversionError,
    StateDictReader,
    check_against,
    put,
    put_batchnorm,
)
from attngan_jax.models.generator import Generator

_CFG_KEYS = {
    "GF_DIM": "gf_dim",
    "EMBEDDING_DIM": "emb_dim",
    "Z_DIM": "z_dim",
    "CONDITION_DIM": "condition_dim",
    "R_NUM": "r_num",
    "BRANCH_NUM": "num_stages",
    "B_DCGAN": "dcgan",
}


def generator_from_cfg(cfg: Mapping[str, Any], **kwargs: Any) -> Generator:
    """Builds a :class:`Generator` from the original's config names.

    Accepts either flat keys (``GF_DIM``, ``R_NUM``, ``BRANCH_NUM``, ``B_DCGAN``, ... as in a
    parity ``case_config``) or the nested ``cfg`` of ``miscc/config.py`` (``GAN.GF_DIM``,
    ``TREE.BRANCH_NUM``, ``TEXT.EMBEDDING_DIM``). Missing keys keep the module defaults.

    Args:
        cfg: the configuration.
        **kwargs: other module fields (``faithful_mask``, ``dtype``).

    Returns:
        The generator.
    """
    flat: dict[str, Any] = {}
    for section in ("GAN", "TREE", "TEXT"):
        if isinstance(cfg.get(section), Mapping):
            flat.update(cfg[section])
    flat.update({k: v for k, v in cfg.items() if not isinstance(v, Mapping)})
    fields = {field: flat[key] for key, field in _CFG_KEYS.items() if key in flat}
    fields = {k: (bool(v) if k == "dcgan" else int(v)) for k, v in fields.items()}
    return Generator(**fields, **kwargs)


def expected_variables(module: Generator) -> Any:
    """Shapes of the generator's variables (``jax.eval_shape``, nothing is materialised)."""
    b, t = 2, 2
    args = (
        jnp.zeros((b, module.z_dim)),
        jnp.zeros((b, module.emb_dim)),
        jnp.zeros((b, t, module.emb_dim)),
        jnp.zeros((b, t), bool),
    )
    eps = jnp.zeros((b, module.condition_dim))
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, train=False, eps=eps))


def convert_generator(
    state_dict: Mapping[str, Any],
    module: Generator | Mapping[str, Any],
    source: str = "<state_dict>",
) -> dict[str, Any]:
    """Converts a torch ``G_NET``/``G_DCGAN`` state dict to Flax variables.

    Args:
        state_dict: torch key -> array (e.g. ``load_state_dict("bird_AttnGAN2.pth")``).
        module: the target :class:`Generator`, or a config for :func:`generator_from_cfg`.
        source: name for error messages.

    Returns:
        ``{"params": ..., "batch_stats": ...}`` with numpy leaves.

    Raises:
        ConversionError: a key is missing or unused, or a tensor's shape differs from what the
            module expects (naming the torch key, both shapes and the likely cause).
    """
    if not isinstance(module, Generator):
        module = generator_from_cfg(module)
    expected = expected_variables(module)
    want = expected["params"]
    reader = StateDictReader(state_dict, source)
    variables: dict[str, Any] = {}

    def conv(path: tuple[str, ...], key: str) -> None:
        kh, kw, i, o = _leaf(want, path, "kernel").shape
        put(
            variables,
            ("params", *path, "kernel"),
            reader.raw(key, (o, i, kh, kw)).transpose(2, 3, 1, 0),
        )

    def linear(path: tuple[str, ...], key: str, bias: bool) -> None:
        i, o = _leaf(want, path, "kernel").shape
        put(variables, ("params", *path, "kernel"), reader.raw(key + ".weight", (o, i)).T)
        if bias:
            put(variables, ("params", *path, "bias"), reader.raw(key + ".bias", (o,)))

    def bn(path: tuple[str, ...], key: str) -> None:
        (c,) = _leaf(want, path, "scale").shape
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            reader.raw(f"{key}.{suffix}", (c,))  # shape check with the torch key in the message
        put_batchnorm(variables, path, reader, key)

    def up_block(path: tuple[str, ...], key: str) -> None:
        conv((*path, "conv"), f"{key}.1.weight")  # index 0 is the parameter-free Upsample
        bn((*path, "bn"), f"{key}.2")

    linear(("ca_net", "fc"), "ca_net.fc", bias=True)
    linear(("h_net1", "fc"), "h_net1.fc.0", bias=False)
    bn(("h_net1", "fc_bn"), "h_net1.fc.1")
    for k in range(1, 5):
        up_block(("h_net1", f"upsample{k}"), f"h_net1.upsample{k}")
    for i in range(2, module.num_stages + 1):
        h = f"h_net{i}"
        conv((h, "att", "conv_context"), f"{h}.att.conv_context.weight")
        for j in range(module.r_num):
            r, rk = (h, f"residual_{j}"), f"{h}.residual.{j}.block"
            conv((*r, "conv1"), f"{rk}.0.weight")
            bn((*r, "bn1"), f"{rk}.1")
            conv((*r, "conv2"), f"{rk}.3.weight")
            bn((*r, "bn2"), f"{rk}.4")
        up_block((h, "upsample"), f"{h}.upsample")
    heads = (
        ["img_net"] if module.dcgan else [f"img_net{i}" for i in range(1, module.num_stages + 1)]
    )
    for name in heads:
        conv((name, "img"), f"{name}.img.0.weight")

    reader.finish()
    check_against(variables, expected, source)
    return variables


def _leaf(tree: Mapping[str, Any], path: tuple[str, ...], name: str) -> Any:
    node: Any = tree
    for p in (*path, name):
        if not isinstance(node, Mapping) or p not in node:
            raise ConversionError(f"the module has no variable {'/'.join((*path, name))}")
        node = node[p]
    return node
