"""StackGAN's CUB-fine-tuned Inception-v3 (TF checkpoint) -> torchvision-named state dict.

The CUB Inception Score uses ``inception_finetuned_models/birds_valid299/model.ckpt-5000``
(hanzhanggit/StackGAN-inception-model ``inception_score.py``; reference §14.1). That script builds
the network with the **old** slim library of tensorflow/models ``inception/inception/slim``
(``slim.inception.inception_v3``), not ``research/slim/nets``; the variable names are therefore
``conv0/weights``, ``mixed_35x35x256a/branch5x5/Conv_1/BatchNorm/moving_mean``,
``logits/logits/biases`` (unscoped: the model's ``tf.name_scope`` does not prefix
``tf.get_variable`` names). The restore uses
``ExponentialMovingAverage(0.9999).variables_to_restore()``, i.e. every trainable variable *and*
every BN moving statistic (old slim puts them in ``MOVING_AVERAGE_VARIABLES``) is read from its
``<name>/ExponentialMovingAverage`` shadow. The newer ``research/slim`` naming
(``InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5``, ``InceptionV3/Logits/Conv2d_1c_1x1``) is also
accepted; the scheme and any prefix are detected from the stem convolution's key.

Both slim versions use conv (no bias) + BatchNorm with ``scale=False`` (no gamma -> ``bn.weight``
= 1), ``epsilon=0.001`` (= torchvision's BasicConv2d), ReLU. The logits layer has 51 outputs:
class 0 is background, dropped before the softmax by the IS (``drop_background=True``). The
auxiliary head is not mapped (unused at evaluation).

Does the torchvision-structured network reproduce TF-slim's outputs? Derived from the op
semantics (no TensorFlow run here):

* convolutions: every stride-2 conv and max pool is ``VALID`` (torchvision padding 0); every
  ``SAME`` conv has stride 1 and odd kernels, where TF pads ``(k-1)/2`` on both sides =
  torchvision's explicit paddings (1x7 -> (0, 3), 5x5 -> 2, ...). Identical.
* branch concatenation orders (old slim lists the branches in the same order as torchvision's
  ``Inception{A..E}.forward``, and ``[1x3, 3x1]`` pairs are created in that order). Identical.
* **pooling differs**: the 3x3 stride-1 ``SAME`` average pools of all eleven Mixed blocks
  (5b-5d, 6b-6e, 7b, 7c) divide by the number of *valid* inputs (TF excludes padding), while
  torchvision uses ``count_include_pad=True`` and pytorch-fid's variant (TF 2015 graph) turns
  Mixed_7c's pool into a *max* pool. Border outputs therefore differ in both existing variants;
  ``InceptionTrunk(tf_slim_pools=True)`` is that third variant (average pools with
  ``count_include_pad=False`` in every block, Mixed_7c included); ``metrics.networks`` uses it for
  the ``stackgan`` kind.
* input: StackGAN feeds ``x/127.5 - 1`` of ``scipy.misc.imresize(img, (299, 299), 'bilinear')``
  (PIL bilinear, re-quantised to uint8): no ``transform_input``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

import numpy as np

from attngan_jax.errors import InputKeyError

_EMA = "/ExponentialMovingAverage"


def _seq(tf_names: list[str], torch_names: list[str]) -> list[tuple[str, str]]:
    return list(zip(tf_names, torch_names, strict=True))


def _convs(scope: str, n: int) -> list[str]:
    """Old slim's default conv scopes inside a branch: Conv, Conv_1, ..."""
    return [f"{scope}/Conv" + ("" if i == 0 else f"_{i}") for i in range(n)]


# ---- old slim (inception/inception/slim/inception_model.py), what StackGAN's checkpoint uses
_OLD_A = _seq(
    _convs("branch1x1", 1)
    + _convs("branch5x5", 2)
    + _convs("branch3x3dbl", 3)
    + _convs("branch_pool", 1),
    [
        "branch1x1",
        "branch5x5_1",
        "branch5x5_2",
        "branch3x3dbl_1",
        "branch3x3dbl_2",
        "branch3x3dbl_3",
        "branch_pool",
    ],
)
_OLD_B = _seq(
    _convs("branch3x3", 1) + _convs("branch3x3dbl", 3),
    ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
)
_OLD_C = _seq(
    _convs("branch1x1", 1)
    + _convs("branch7x7", 3)
    + _convs("branch7x7dbl", 5)
    + _convs("branch_pool", 1),
    ["branch1x1"]
    + [f"branch7x7_{i}" for i in (1, 2, 3)]
    + [f"branch7x7dbl_{i}" for i in range(1, 6)]
    + ["branch_pool"],
)
_OLD_D = _seq(
    _convs("branch3x3", 2) + _convs("branch7x7x3", 4),
    ["branch3x3_1", "branch3x3_2"] + [f"branch7x7x3_{i}" for i in range(1, 5)],
)
_E_TORCH = [
    "branch1x1",
    "branch3x3_1",
    "branch3x3_2a",
    "branch3x3_2b",
    "branch3x3dbl_1",
    "branch3x3dbl_2",
]
_E_TORCH += ["branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"]
_OLD_E = _seq(
    _convs("branch1x1", 1)
    + _convs("branch3x3", 3)
    + _convs("branch3x3dbl", 4)
    + _convs("branch_pool", 1),
    _E_TORCH,
)
OLD_SLIM_BLOCKS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("conv0", "Conv2d_1a_3x3", [("", "")]),
    ("conv1", "Conv2d_2a_3x3", [("", "")]),
    ("conv2", "Conv2d_2b_3x3", [("", "")]),
    ("conv3", "Conv2d_3b_1x1", [("", "")]),
    ("conv4", "Conv2d_4a_3x3", [("", "")]),
    ("mixed_35x35x256a", "Mixed_5b", _OLD_A),
    ("mixed_35x35x288a", "Mixed_5c", _OLD_A),
    ("mixed_35x35x288b", "Mixed_5d", _OLD_A),
    ("mixed_17x17x768a", "Mixed_6a", _OLD_B),
    *((f"mixed_17x17x768{s}", f"Mixed_6{s}", _OLD_C) for s in "bcde"),
    ("mixed_17x17x1280a", "Mixed_7a", _OLD_D),
    ("mixed_8x8x2048a", "Mixed_7b", _OLD_E),
    ("mixed_8x8x2048b", "Mixed_7c", _OLD_E),
]
"""(TF block scope, torchvision block, [(TF conv scope in the block, torchvision conv name)])."""
OLD_SLIM_LOGITS = "logits/logits"  # fc weights (2048, C), biases (C,)


# ---- research/slim/nets/inception_v3.py (InceptionV3/...), accepted as well
def _new(branches: list[tuple[int, str]], torch_names: list[str]) -> list[tuple[str, str]]:
    return _seq([f"Branch_{b}/Conv2d_{s}" for b, s in branches], torch_names)


_A_TORCH = [n for _, n in _OLD_A]
_NEW_A = _new(
    [
        (0, "0a_1x1"),
        (1, "0a_1x1"),
        (1, "0b_5x5"),
        (2, "0a_1x1"),
        (2, "0b_3x3"),
        (2, "0c_3x3"),
        (3, "0b_1x1"),
    ],
    _A_TORCH,
)
_5C_ODD = {
    "branch5x5_1": "Branch_1/Conv2d_0b_1x1",
    "branch5x5_2": "Branch_1/Conv_1_0c_5x5",
}  # slim's odd names
_NEW_5C = [(_5C_ODD.get(t, tf), t) for tf, t in _NEW_A]
_NEW_B = _new([(0, "1a_1x1"), (1, "0a_1x1"), (1, "0b_3x3"), (1, "1a_1x1")], [n for _, n in _OLD_B])
_NEW_C = _new(
    [
        (0, "0a_1x1"),
        (1, "0a_1x1"),
        (1, "0b_1x7"),
        (1, "0c_7x1"),
        (2, "0a_1x1"),
        (2, "0b_7x1"),
        (2, "0c_1x7"),
    ]
    + [(2, "0d_7x1"), (2, "0e_1x7"), (3, "0b_1x1")],
    [n for _, n in _OLD_C],
)
_NEW_D = _new(
    [(0, "0a_1x1"), (0, "1a_3x3"), (1, "0a_1x1"), (1, "0b_1x7"), (1, "0c_7x1"), (1, "1a_3x3")],
    [n for _, n in _OLD_D],
)
_E_NEW = [
    (0, "0a_1x1"),
    (1, "0a_1x1"),
    (1, "0b_1x3"),
    (1, "0b_3x1"),
    (2, "0a_1x1"),
    (2, "0b_3x3"),
    (2, "0c_1x3"),
]
_E_NEW += [(2, "0d_3x1"), (3, "0b_1x1")]
_NEW_7B = _new(_E_NEW, _E_TORCH)
_NEW_7C = _new([(1, "0c_3x1") if x == (1, "0b_3x1") else x for x in _E_NEW], _E_TORCH)
NEW_SLIM_BLOCKS: list[tuple[str, str, list[tuple[str, str]]]] = [
    *(
        (n, n, [("", "")])
        for n in (
            "Conv2d_1a_3x3",
            "Conv2d_2a_3x3",
            "Conv2d_2b_3x3",
            "Conv2d_3b_1x1",
            "Conv2d_4a_3x3",
        )
    ),
    ("Mixed_5b", "Mixed_5b", _NEW_A),
    ("Mixed_5c", "Mixed_5c", _NEW_5C),
    ("Mixed_5d", "Mixed_5d", _NEW_A),
    ("Mixed_6a", "Mixed_6a", _NEW_B),
    *((f"Mixed_6{s}", f"Mixed_6{s}", _NEW_C) for s in "bcde"),
    ("Mixed_7a", "Mixed_7a", _NEW_D),
    ("Mixed_7b", "Mixed_7b", _NEW_7B),
    ("Mixed_7c", "Mixed_7c", _NEW_7C),
]
NEW_SLIM_LOGITS = "Logits/Conv2d_1c_1x1"  # 1x1 conv weights (1, 1, 2048, C), biases (C,)


def detect_scheme(names: Mapping[str, object] | list[str]) -> tuple[str, str]:
    """Returns ``("old" | "new", prefix)`` from the stem convolution's variable name."""
    found = []  # Mixed_7a/Branch_0/Conv2d_1a_3x3 also matches: keep the shortest prefix
    for name in names:
        m = re.fullmatch(r"(.*?)(conv0|Conv2d_1a_3x3)/weights(/ExponentialMovingAverage)?", name)
        if m:
            found.append((len(m.group(1)), "old" if m.group(2) == "conv0" else "new", m.group(1)))
    if found:
        return min(found)[1:]
    raise InputKeyError(
        "no Inception-v3 stem convolution ('conv0/weights' or "
        "'InceptionV3/Conv2d_1a_3x3/weights') among "
        f"{len(names)} variables, e.g. {sorted(names)[:6]}"
    )


def stackgan_inception_state_dict(
    variables: Mapping[str, np.ndarray], ema: bool = True
) -> dict[str, np.ndarray]:
    """Maps TF-slim Inception-v3 variables to torchvision ``Inception3`` state-dict keys.

    Args:
        variables: ``read_tf_checkpoint(prefix)`` output.
        ema: read ``<name>/ExponentialMovingAverage`` (what StackGAN's script restores). A variable
            without a shadow falls back to its raw value with a warning listing them.

    Returns:
        torch-layout float32 arrays: ``<Block>[.<conv>].conv.weight`` (O, I, kh, kw),
        ``...bn.weight`` (ones), ``...bn.bias`` (beta), ``...bn.running_mean``,
        ``...bn.running_var``, ``fc.weight`` (C, 2048), ``fc.bias`` (C,), C = 51 for the CUB model.

    Raises:
        InputKeyError: a variable is missing (names the TF key and the torch key it was for).
    """
    scheme, prefix = detect_scheme(list(variables))
    blocks, logits = (
        (OLD_SLIM_BLOCKS, OLD_SLIM_LOGITS)
        if scheme == "old"
        else (NEW_SLIM_BLOCKS, NEW_SLIM_LOGITS)
    )
    fallbacks: list[str] = []

    def get(tf_name: str, torch_key: str) -> np.ndarray:
        full = prefix + tf_name
        if ema and full + _EMA in variables:
            return np.asarray(variables[full + _EMA], np.float32)
        if full not in variables:
            raise InputKeyError(
                f"TF variable '{full}' (for '{torch_key}') is not in the checkpoint "
                f"({scheme} slim naming)"
            )
        if ema:
            fallbacks.append(full)
        return np.asarray(variables[full], np.float32)

    out: dict[str, np.ndarray] = {}
    for tf_block, torch_block, convs in blocks:
        for tf_conv, torch_conv in convs:
            tf_p = f"{tf_block}/{tf_conv}".rstrip("/")
            t_p = f"{torch_block}.{torch_conv}".rstrip(".")
            out[f"{t_p}.conv.weight"] = get(f"{tf_p}/weights", t_p).transpose(
                3, 2, 0, 1
            )  # (kh,kw,I,O)->(O,I,kh,kw)
            beta = get(f"{tf_p}/BatchNorm/beta", t_p)
            gamma_name = f"{prefix}{tf_p}/BatchNorm/gamma"
            out[f"{t_p}.bn.weight"] = (
                get(f"{tf_p}/BatchNorm/gamma", t_p)
                if gamma_name in variables
                else np.ones_like(beta)
            )
            out[f"{t_p}.bn.bias"] = beta
            out[f"{t_p}.bn.running_mean"] = get(f"{tf_p}/BatchNorm/moving_mean", t_p)
            out[f"{t_p}.bn.running_var"] = get(f"{tf_p}/BatchNorm/moving_variance", t_p)
    w = get(f"{logits}/weights", "fc.weight")
    out["fc.weight"] = w.reshape(-1, w.shape[-1]).T  # (2048, C) or (1, 1, 2048, C) -> (C, 2048)
    out["fc.bias"] = get(f"{logits}/biases", "fc.bias")
    if fallbacks:
        warnings.warn(
            f"no ExponentialMovingAverage shadow for {len(fallbacks)} variables, "
            f"e.g. {fallbacks[:3]}",
            stacklevel=2,
        )
    return out


def load_stackgan_inception(prefix: str, ema: bool = True) -> dict[str, np.ndarray]:
    """Reads the TF checkpoint at ``prefix`` and maps it (:func:`stackgan_inception_state_dict`)."""
    from attngan_jax.metrics.tf_checkpoint import read_tf_checkpoint

    return stackgan_inception_state_dict(read_tf_checkpoint(prefix), ema=ema)
