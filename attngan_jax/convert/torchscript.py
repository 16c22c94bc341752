"""The tensors of a TorchScript archive (OpenAI's CLIP ``ViT-B-32.pt``), read without running it.

``torch.load(weights_only=True)`` refuses TorchScript archives and ``torch.jit.load`` executes the
archive's code, so neither is used. An archive is a zip::

    <name>/data.pkl        the module tree: a pickle of objects of classes ``__torch__.*``
    <name>/data/<key>      the raw bytes of each tensor storage
    <name>/code/...        the TorchScript source (never read here)
    <name>/constants.pkl   constants of the code (never read here)

``data.pkl`` is read with a restricted :class:`pickle.Unpickler` whose ``find_class`` resolves
only: ``__torch__.*`` classes (to an inert :class:`ScriptObject` that stores its attributes; no
code of the archive runs), ``torch._utils._rebuild_tensor_v2`` (rebuilt here with numpy from the
storage bytes, without torch), ``torch.<Type>Storage`` (a dtype), ``collections.OrderedDict`` and
the list builders of ``torch.jit._pickle``. Anything else raises :class:`ConversionError` naming
the refused global. The state dict is then every tensor attribute of the module tree, keyed by its
attribute path (``visual.transformer.resblocks.0.attn.in_proj_weight``): the parameters and
buffers that ``torch.jit.load(path).state_dict()`` returns.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from attngan_jax.convert.common import ConversionError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
    "BFloat16Storage": "bfloat16",  # widened to float32 by hand (numpy has no bfloat16)
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class ScriptObject:
    """A TorchScript object of ``data.pkl``: only its pickled state (``state``), no behaviour."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _identity(value: Any, *unused: Any) -> Any:
    return value


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source
        self.classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            key = (module, name)
            if key not in self.classes:  # one inert class per TorchScript class
                self.classes[key] = type(name, (ScriptObject,), {"__module__": "torchscript"})
            return self.classes[key]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch.jit._pickle" and (
            name.startswith("build_") or name == "restore_type_tag"
        ):
            return _identity
        raise ConversionError(
            f"{self.source}: data.pkl asks for the global {module}.{name}, which a TorchScript "
            "archive of weights does not need; refused (nothing in the archive was run)"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ConversionError(f"{self.source}: unexpected persistent id {pid!r} in data.pkl")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType):
            raise ConversionError(f"{self.source}: unexpected storage type {stype!r}")
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        dtype = _STORAGE_DTYPES[stype.name]
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, np.dtype("<u2")).astype(np.uint32) << 16
            return bits.view(np.float32)[:numel]
        return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))[:numel]


def _rebuild_tensor(storage, offset, size, stride, *unused) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2`` with numpy: a strided view of the storage, copied."""
    if not size:
        return np.array(storage[offset])
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], tuple(size), tuple(s * item for s in stride), writeable=False
    )
    return np.array(view)


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``<name>/constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.count("/") == 1 and n.endswith("/constants.pkl") for n in z.namelist())


def _collect(obj: ScriptObject, prefix: str, out: dict[str, np.ndarray]) -> None:
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            out[prefix + str(name)] = value
        elif isinstance(value, ScriptObject):
            _collect(value, f"{prefix}{name}.", out)


def load_torchscript_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The parameters and buffers of a TorchScript archive, as numpy (no torch, no code run).

    Args:
        path: e.g. OpenAI's ``ViT-B-32.pt``.

    Returns:
        ``{attribute path: array}`` in the archive's dtypes (OpenAI's are mostly float16).

    Raises:
        ConversionError: not a TorchScript archive, or its ``data.pkl`` needs a global outside the
            allow-list (named in the message), or it is damaged.
    """
    source = os.fspath(path)
    try:
        with zipfile.ZipFile(source) as z:
            pkls = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(pkls) != 1:
                raise ConversionError(f"{source}: not a TorchScript archive (no <name>/data.pkl)")
            prefix = pkls[0].split("/")[0]
            root = _Unpickler(z.read(pkls[0]), z, prefix, source).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError) as e:
        raise ConversionError(
            f"{source}: a damaged TorchScript archive ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(root, ScriptObject):
        raise ConversionError(f"{source}: data.pkl holds {type(root).__name__}, not a module")
    out: dict[str, np.ndarray] = {}
    _collect(root, "", out)
    if not out:
        raise ConversionError(f"{source}: the TorchScript module holds no tensors")
    return out
