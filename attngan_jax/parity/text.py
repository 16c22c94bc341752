"""Parity runner for kind ``rnn_encoder`` (the DAMSM text encoder ``RNN_ENCODER``).

Outputs ``words_emb<sfx>`` / ``sent_emb<sfx>`` are produced from inputs ``captions<sfx>`` /
``cap_lens<sfx>`` for every suffix the case holds. The reference trims ``words_emb`` to
``T = max(cap_lens)``; ours keeps ``T = WORDS_NUM``, so we compare the first ``T`` positions and
check separately that the rest is exactly zero (extra check ``<name>:beyond_T``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax.convert.text_encoder import convert_text_encoder
from attngan_jax.models.text_encoder import RNNEncoder
from attngan_jax.parity import Check, register, split_arrays

ATOL = 1e-6  # fixture README: fp32 vs fp64 error <= 6e-8


@register("rnn_encoder")
def run(case: dict, arrays: dict, case_dir: str) -> list[Check]:
    """Builds ``RNNEncoder`` from ``case_config``, converts the weights and checks every output.

    Args:
        case: the fixture JSON.
        arrays: the fixture arrays.
        case_dir: fixture directory (unused).

    Returns:
        One check per output plus one ``:beyond_T`` zero check per trimmed ``words_emb``.
    """
    cc = case["case_config"]
    if cc.get("mode", "eval") != "eval":
        raise ValueError(
            f"rnn_encoder: only eval-mode cases can be reproduced (got {cc['mode']!r})"
        )
    module = RNNEncoder(
        vocab_size=int(cc["ntoken"]), embed_dim=int(cc["ninput"]), hidden_dim=int(cc["nhidden"])
    )
    weights, inputs, outputs = split_arrays(arrays)
    variables = convert_text_encoder(weights, module, source=case.get("file", "rnn_encoder"))
    apply = jax.jit(lambda c, n: module.apply(variables, c, n, train=False))

    checks = []
    suffixes = sorted({k[len("words_emb") :] for k in outputs if k.startswith("words_emb")})
    suffixes += sorted(
        {k[len("sent_emb") :] for k in outputs if k.startswith("sent_emb")} - set(suffixes)
    )
    for sfx in suffixes:
        captions = jnp.asarray(inputs["captions" + sfx], jnp.int32)
        lens = jnp.asarray(inputs["cap_lens" + sfx], jnp.int32)
        words, sent = (np.asarray(a) for a in apply(captions, lens))
        words = words.transpose(0, 2, 1)  # (B, L, D) -> (B, D, L), the fixture's layout
        if "words_emb" + sfx in outputs:
            ref = outputs["words_emb" + sfx]
            t = ref.shape[-1]
            checks.append(Check("words_emb" + sfx, words[..., :t], ref, ATOL))
            rest = words[..., t:]
            checks.append(Check(f"words_emb{sfx}:beyond_T", rest, np.zeros_like(rest), 0.0))
        if "sent_emb" + sfx in outputs:
            checks.append(Check("sent_emb" + sfx, sent, outputs["sent_emb" + sfx], ATOL))
    return checks
