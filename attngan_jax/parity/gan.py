"""Parity runner for kind ``g_net`` (the generator ``G_NET`` / ``G_DCGAN``).

Outputs are named as in the fixture: ``fake_img_<R>`` per resolution, ``att_map_<k>`` per next
stage, ``mu``, ``logvar``, ``c_code``; a ``train_`` prefix marks the same forward with BatchNorm in
train mode. Images are compared in NCHW and word features are fed as (B, T, D).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax.convert.generator import convert_generator, generator_from_cfg
from attngan_jax.parity import Check, nchw, register, split_arrays

# Fixture README: G images atol 2e-4, attention maps 5e-5, mu/logvar/c_code 1e-6.
TOLERANCES = {"fake_img": 2e-4, "att_map": 5e-5, "mu": 1e-6, "logvar": 1e-6, "c_code": 1e-6}


def _tolerance(name: str) -> float:
    base = name.removeprefix("train_")
    for prefix, tol in TOLERANCES.items():
        if base.startswith(prefix):
            return tol
    raise KeyError(f"g_net: no tolerance known for output {name!r}")


def _named_outputs(out, prefix: str) -> dict[str, np.ndarray]:
    named = {f"{prefix}mu": out.mu, f"{prefix}logvar": out.logvar, f"{prefix}c_code": out.c_code}
    for img in out.fake_imgs:
        named[f"{prefix}fake_img_{img.shape[1]}"] = nchw(img)
    for k, att in enumerate(out.att_maps, start=1):
        named[f"{prefix}att_map_{k}"] = att
    return {k: np.asarray(v) for k, v in named.items()}


@register("g_net")
def run(case: dict, arrays: dict, case_dir: str) -> list[Check]:
    """Builds the generator from ``case_config``, converts the weights, checks every output.

    Args:
        case: the fixture JSON (``case_config``: BRANCH_NUM, GF_DIM, EMBEDDING_DIM, Z_DIM,
            CONDITION_DIM, R_NUM, optionally B_DCGAN).
        arrays: the fixture arrays (inputs ``z``, ``sent_emb``, ``word_embs`` (B, D, T), ``mask``,
            ``eps``).
        case_dir: fixture directory (unused).

    Returns:
        One check per output.
    """
    module = generator_from_cfg(case["case_config"], faithful_mask=True)
    weights, inputs, outputs = split_arrays(arrays)
    variables = convert_generator(weights, module, source=case.get("file", "g_net"))
    args = (
        jnp.asarray(inputs["z"], jnp.float32),
        jnp.asarray(inputs["sent_emb"], jnp.float32),
        jnp.asarray(inputs["word_embs"], jnp.float32).transpose(0, 2, 1),  # (B, D, T) -> (B, T, D)
        jnp.asarray(inputs["mask"], bool),
    )
    eps = jnp.asarray(inputs["eps"], jnp.float32)

    @jax.jit
    def forward_eval(variables, args, eps):
        return module.apply(variables, *args, train=False, eps=eps)

    @jax.jit
    def forward_train(variables, args, eps):
        out, _ = module.apply(variables, *args, train=True, eps=eps, mutable=["batch_stats"])
        return out

    ours = {}
    if any(not k.startswith("train_") for k in outputs):
        ours.update(_named_outputs(forward_eval(variables, args, eps), ""))
    if any(k.startswith("train_") for k in outputs):
        ours.update(_named_outputs(forward_train(variables, args, eps), "train_"))

    checks = []
    for name, ref in outputs.items():
        if name not in ours:
            raise KeyError(f"g_net: the module produces no output {name!r} (have {sorted(ours)})")
        checks.append(Check(name, ours[name], ref, _tolerance(name)))
    return checks
