"""Shared machinery for turning PyTorch ``state_dict``s into Flax variables.

Every converter in this package follows the same pattern::

    reader = StateDictReader(state_dict, source="bird_AttnGAN2.pth")
    variables = {"params": {...}, "batch_stats": {...}}
    put(variables, ("params", "ca_net", "fc", "kernel"), reader.linear_kernel("ca_net.fc.weight"))
    ...
    reader.finish()                              # unused keys -> error
    check_against(variables, expected, source)   # shapes vs. the Flax module -> error

Errors name the torch key, both shapes and the likely cause (wrong vocabulary, wrong GF_DIM, ...),
which is the most common complaint about loading the original checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from attngan_jax.errors import InputError

PyTree = Any


class ConversionError(InputError):
    """A checkpoint does not fit the module it is being loaded into."""


def _hint(key: str) -> str:
    k = key.lower()
    if k.startswith("encoder.weight") or "embed" in k:
        return (
            "the vocabulary size differs: the text encoder was trained with another "
            "captions.pickle (birds has 5,450 words, COCO 27,297); use the dataset's own "
            "captions.pickle or set the model's vocab_size to the checkpoint's"
        )
    if "rnn." in k:
        return "the text encoder's hidden size differs (set embedding_dim / nhidden to match)"
    if k.startswith(("h_net", "img_net", "ca_net")):
        return (
            "the generator configuration differs: check gf_dim (GF_DIM: 32 birds, 48 COCO), "
            "r_num (R_NUM: 2 birds, 3 COCO, 0 AttnDCGAN), embedding_dim and z_dim/condition_dim"
        )
    if k.startswith(("img_code", "cond_dnet", "uncond_dnet", "netsd")):
        return "the discriminator configuration differs: check df_dim (DF_DIM: 64 birds, 96 COCO)"
    if k.startswith(("emb_features", "emb_cnn_code")):
        return "the image encoder's nef (EMBEDDING_DIM) differs from the checkpoint's"
    return "the checkpoint was made for a different configuration of this network"


class StateDictReader:
    """Reads tensors from a torch-keyed state dict with layout conversion and bookkeeping.

    Args:
        state_dict: mapping from torch key to array (numpy or anything ``np.asarray`` accepts).
        source: a name for error messages (usually the file path).
        prefix: prepended to every key asked for (e.g. ``"netsD.0."``).
    """

    def __init__(
        self, state_dict: Mapping[str, Any], source: str = "<state_dict>", prefix: str = ""
    ):
        self.sd = state_dict
        self.source = source
        self.prefix = prefix
        self.used: set[str] = set()

    def with_prefix(self, prefix: str) -> StateDictReader:
        """A reader over the same dict that shares the bookkeeping, with ``prefix`` added."""
        r = StateDictReader(self.sd, self.source, self.prefix + prefix)
        r.used = self.used
        return r

    def has(self, key: str) -> bool:
        """Whether ``prefix + key`` is in the state dict."""
        return (self.prefix + key) in self.sd

    def raw(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Returns the tensor as float32 numpy (ints kept), checking the torch shape if given."""
        full = self.prefix + key
        if full not in self.sd:
            raise ConversionError(
                f"{self.source}: missing key '{full}'. Likely cause: {_hint(full)}. "
                f"Keys present with this prefix: "
                f"{sorted(k for k in self.sd if k.startswith(self.prefix))[:8]}..."
            )
        self.used.add(full)
        a = self.sd[full]
        a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float32)
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise ConversionError(
                f"{self.source}: key '{full}' has shape {tuple(a.shape)} in the checkpoint but the "
                f"module expects {tuple(shape)} (torch layout). Likely cause: {_hint(full)}."
            )
        return a

    def conv_kernel(self, key: str) -> np.ndarray:
        """Conv2d weight (O, I, kh, kw) -> Flax kernel (kh, kw, I, O)."""
        return self.raw(key).transpose(2, 3, 1, 0)

    def linear_kernel(self, key: str) -> np.ndarray:
        """Linear weight (out, in) -> Dense kernel (in, out)."""
        return self.raw(key).T

    def batchnorm(self, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """BatchNorm ``prefix.{weight,bias,running_mean,running_var}`` -> (params, batch_stats).

        ``num_batches_tracked`` is consumed when present (it is absent from PyTorch-0.3 files).
        """
        params = {"scale": self.raw(prefix + ".weight"), "bias": self.raw(prefix + ".bias")}
        stats = {
            "mean": self.raw(prefix + ".running_mean"),
            "var": self.raw(prefix + ".running_var"),
        }
        nbt = self.prefix + prefix + ".num_batches_tracked"
        if nbt in self.sd:
            self.used.add(nbt)
        return params, stats

    def finish(self, ignore: Callable[[str], bool] | None = None) -> None:
        """Raises if keys under this reader's prefix were never read (e.g. an extra stage)."""
        left = [
            k
            for k in self.sd
            if k.startswith(self.prefix)
            and k not in self.used
            and not k.endswith("num_batches_tracked")
            and not (ignore and ignore(k))
        ]
        if left:
            raise ConversionError(
                f"{self.source}: {len(left)} checkpoint keys were not used, e.g. {left[:6]}. "
                f"Likely cause: {_hint(left[0])} (for example more stages or residual blocks in "
                "the checkpoint than in the module)."
            )


def put(tree: dict, path: tuple[str, ...], value: Any) -> None:
    """Sets ``tree[path[0]][path[1]]... = value``, creating dicts on the way."""
    node = tree
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value


def put_batchnorm(
    variables: dict, path: tuple[str, ...], reader: StateDictReader, key: str
) -> None:
    """Stores a torch BatchNorm (``key``) at module ``path`` in ``params`` and ``batch_stats``."""
    p, s = reader.batchnorm(key)
    put(variables, ("params", *path), p)
    put(variables, ("batch_stats", *path), s)


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def check_against(variables: Mapping, expected: Mapping, source: str) -> None:
    """Checks converted ``variables`` against the shapes of the Flax module's own variables.

    Args:
        variables: the converted tree (numpy leaves).
        expected: e.g. ``jax.eval_shape(module.init, ...)`` (leaves with ``.shape``).
        source: name for error messages.

    Raises:
        ConversionError: a leaf is missing, extra, or has another shape.
    """
    got, want = _flatten(variables), _flatten(expected)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing:
        raise ConversionError(
            f"{source}: the checkpoint provides no value for {len(missing)} module variables, "
            f"e.g. {['/'.join(m) for m in missing[:6]]}. Likely cause: the module has more stages "
            "or blocks than the checkpoint (check the configuration)."
        )
    if extra:
        raise ConversionError(
            f"{source}: converted variables not present in the module: "
            f"{['/'.join(m) for m in extra[:6]]} (check the configuration)."
        )
    for k in sorted(want):
        if tuple(got[k].shape) != tuple(want[k].shape):
            raise ConversionError(
                f"{source}: variable '{'/'.join(k)}' has shape {tuple(got[k].shape)} from the "
                f"checkpoint but the module expects {tuple(want[k].shape)}. Likely cause: "
                f"{_hint('/'.join(k[1:]))}."
            )
