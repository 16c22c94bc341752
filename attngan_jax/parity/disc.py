"""Parity runner for the discriminators (fixture kind ``d_net``: ``d_d_net64/128/256``).

The fixture's ``cond_logits`` / ``uncond_logits`` are the original's *probabilities* (its heads end
in a sigmoid), so ``sigmoid`` of our logits is compared. Eval outputs use the running statistics;
``train_*`` outputs use batch statistics, the image trunk and the conditional head each being one
BatchNorm batch (as in the original's separate calls).
"""

from __future__ import annotations

import jax
import numpy as np

from attngan_jax.convert.discriminator import convert_discriminator
from attngan_jax.models.discriminator import Discriminator
from attngan_jax.parity import Check, nchw, nhwc, register, split_arrays

# README tolerances: img_code atol 5e-5, logits (probabilities) 5e-6.
ATOL_CODE = 5e-5
ATOL_LOGITS = 5e-6


def discriminator_from_config(cfg: dict) -> Discriminator:
    """Builds the D of a ``d_net`` case from its ``case_config``."""
    return Discriminator(
        df_dim=int(cfg["DF_DIM"]),
        emb_dim=int(cfg["EMBEDDING_DIM"]),
        image_size=int(cfg["image_size"]),
        uncond=bool(cfg.get("B_JCU", True)),
    )


def d_outputs(d: Discriminator, variables, images, sent_emb, train: bool) -> dict[str, np.ndarray]:
    """img_code (NCHW) and the heads' probabilities, each head call its own BN batch."""
    if train:
        code, _ = d.apply(variables, images, True, mutable=["batch_stats"])
        cond, _ = d.apply(
            variables, code, sent_emb, True, method="cond_logits", mutable=["batch_stats"]
        )
    else:
        code = d.apply(variables, images, False)
        cond = d.apply(variables, code, sent_emb, False, method="cond_logits")
    out = {"img_code": nchw(code), "cond_logits": np.asarray(jax.nn.sigmoid(cond))}
    if d.uncond:
        unc = d.apply(variables, code, method="uncond_logits")
        out["uncond_logits"] = np.asarray(jax.nn.sigmoid(unc))
    return out


@register("d_net")
def run_d_net(case: dict, arrays: dict, case_dir: str) -> list[Check]:
    """Converts the stored D, runs it in eval and train mode, compares every output."""
    d = discriminator_from_config(case["case_config"])
    weights, inputs, outputs = split_arrays(arrays)
    variables = convert_discriminator(weights, d, source=case.get("file", "d_net"))
    images = nhwc(inputs["imgs"]).astype(np.float32)
    sent = inputs["sent_emb"].astype(np.float32)
    ours = {}
    for train, pre in ((False, ""), (True, "train_")):
        for k, val in d_outputs(d, variables, images, sent, train).items():
            ours[pre + k] = val
    checks = []
    for name, ref in outputs.items():
        if name not in ours:
            raise KeyError(f"d_net runner does not know output {name!r}")
        atol = ATOL_CODE if name.endswith("img_code") else ATOL_LOGITS
        checks.append(Check(name, ours[name], ref, atol))
    return checks
