"""``RNN_ENCODER`` state dict (reference §15.3) -> ``attngan_jax.models.text_encoder.RNNEncoder``.

Key mapping (torch -> Flax ``params``):

==========================================  ======================================================
``encoder.weight`` (V, E)                   ``encoder/embedding`` (V, E)
``rnn.weight_ih_l0[_reverse]`` (4H, E)      ``rnn/w_ih[d]`` (E, 4H), d = 0 forward, 1 ``_reverse``
``rnn.weight_hh_l0[_reverse]`` (4H, H)      ``rnn/w_hh[d]`` (H, 4H)
``rnn.bias_ih_l0[_reverse]`` (4H,)          ``rnn/b_ih[d]``
``rnn.bias_hh_l0[_reverse]`` (4H,)          ``rnn/b_hh[d]``
==========================================  ======================================================

The gate blocks of torch's rows (i, f, g, o) become column blocks in the same order (a transpose),
and both biases are kept (the cell adds them), so the parameter count equals the original's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax.convert.common import ConversionError, StateDictReader, check_against, put
from attngan_jax.models.text_encoder import RNNEncoder


def text_encoder_from_state_dict(
    state_dict: Mapping[str, Any], source: str = "<state_dict>", **kwargs: Any
) -> RNNEncoder:
    """Builds an :class:`RNNEncoder` whose sizes are read off a state dict's shapes.

    Args:
        state_dict: torch-keyed ``RNN_ENCODER`` state dict.
        source: a name for error messages (usually the file path).
        **kwargs: other module fields (e.g. ``dtype``).

    Returns:
        The module (vocab size, embedding size and hidden size from the checkpoint).
    """
    if "encoder.weight" not in state_dict or "rnn.weight_hh_l0" not in state_dict:
        raise ConversionError(
            f"{source}: not an RNN_ENCODER state dict: 'encoder.weight'/'rnn.weight_hh_l0' "
            "missing (is it the text encoder, e.g. text_encoder200.pth?)"
        )
    vocab, embed = np.shape(state_dict["encoder.weight"])
    per_dir = np.shape(state_dict["rnn.weight_hh_l0"])[1]
    return RNNEncoder(
        vocab_size=int(vocab), embed_dim=int(embed), hidden_dim=2 * int(per_dir), **kwargs
    )


def expected_variables(module: RNNEncoder) -> Any:
    """Shapes of the module's variables (``jax.eval_shape``, nothing is materialised)."""
    captions = jnp.zeros((1, 2), jnp.int32)
    lens = jnp.ones((1,), jnp.int32)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), captions, lens))


def convert_text_encoder(
    state_dict: Mapping[str, Any],
    module: RNNEncoder | None = None,
    source: str = "<state_dict>",
) -> dict[str, Any]:
    """Converts a torch ``RNN_ENCODER`` state dict to Flax variables for ``module``.

    Args:
        state_dict: torch key -> array (e.g. from ``load_state_dict("text_encoder200.pth")``).
        module: the target module; ``None`` builds one from the checkpoint's shapes.
        source: name for error messages.

    Returns:
        ``{"params": ...}`` with numpy float32 leaves.

    Raises:
        ConversionError: a key is missing or unused, or a shape differs from the module's (the
            message names the torch key, both shapes and the likely cause, e.g. the vocabulary).
    """
    if module is None:
        module = text_encoder_from_state_dict(state_dict)
    want = expected_variables(module)["params"]
    reader = StateDictReader(state_dict, source)
    variables: dict[str, Any] = {}

    v, e = want["encoder"]["embedding"].shape
    put(variables, ("params", "encoder", "embedding"), reader.raw("encoder.weight", (v, e)))

    _, e_in, four_h = want["rnn"]["w_ih"].shape
    h = want["rnn"]["w_hh"].shape[1]
    stacks: dict[str, list[np.ndarray]] = {"w_ih": [], "w_hh": [], "b_ih": [], "b_hh": []}
    for suffix in ("", "_reverse"):
        stacks["w_ih"].append(reader.raw(f"rnn.weight_ih_l0{suffix}", (four_h, e_in)).T)
        stacks["w_hh"].append(reader.raw(f"rnn.weight_hh_l0{suffix}", (four_h, h)).T)
        stacks["b_ih"].append(reader.raw(f"rnn.bias_ih_l0{suffix}", (four_h,)))
        stacks["b_hh"].append(reader.raw(f"rnn.bias_hh_l0{suffix}", (four_h,)))
    for name, arrs in stacks.items():
        put(variables, ("params", "rnn", name), np.stack(arrs, axis=0))

    reader.finish()
    check_against(variables, {"params": want}, source)
    return variables
