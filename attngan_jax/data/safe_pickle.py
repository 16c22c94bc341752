"""Loading the original release's pickles without letting them run code.

The preprocessed metadata of the original release (``captions.pickle``, ``filenames.pickle``,
``class_info.pickle``) are Python-2 pickles (protocol 2) of plain lists, dicts, strings, numbers and
possibly numpy arrays. A pickle can call any importable callable while it loads, so these files are
read with a restricted :class:`pickle.Unpickler` whose ``find_class`` resolves only the few globals
those contents need (an explicit table, nothing is imported by name) and refuses everything else
with :class:`UnsafePickleError` naming the file and the refused global.

Python-2 ``str`` objects are decoded as UTF-8 first; when that fails (binary numpy data in
``class_info.pickle``) the file is read again with ``latin1``, which numpy requires for such data
(reference §15, last paragraph). Any ``bytes`` left in containers (pickles re-saved by Python-3
forks that loaded with ``encoding='bytes'``) are decoded to ``str`` as well.
"""

from __future__ import annotations

import collections
import copyreg
import io
import os
import pickle
from typing import Any

import numpy as np

from attngan_jax.data.text import DataError
from attngan_jax.errors import MissingInputError


class PickleFormatError(DataError, pickle.UnpicklingError):
    """The file is not a readable pickle (damaged, truncated, or not a pickle at all)."""


class UnsafePickleError(PickleFormatError):
    """A pickle asked for a global outside the allow-list; nothing it referenced was called."""


def _np_multiarray():
    """The multiarray module under its numpy-2 (``_core``) or numpy-1 (``core``) name."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


# Harmless builtins: container/number constructors and ``object`` (base of copyreg reconstruction).
_BUILTINS: dict[str, Any] = {
    "set": set,
    "frozenset": frozenset,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "int": int,
    "long": int,  # Python 2
    "float": float,
    "complex": complex,
    "bool": bool,
    "str": str,
    "unicode": str,  # Python 2
    "bytes": bytes,
    "bytearray": bytearray,
    "object": object,
}

_RECONSTRUCTABLE = (collections.OrderedDict, collections.defaultdict, np.ndarray)


def _safe_reconstructor(cls, base, state):
    """``copyreg._reconstructor`` restricted to allow-listed classes and bases."""
    allowed_bases = set(_BUILTINS.values()) | set(_RECONSTRUCTABLE)
    if not (isinstance(cls, type) and cls in allowed_bases and base in allowed_bases):
        raise UnsafePickleError(f"copyreg._reconstructor refused for class {cls!r}, base {base!r}")
    return copyreg._reconstructor(cls, base, state)


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` (how Python 3 writes ``bytes`` at protocol 2): str -> bytes only."""
    if not isinstance(obj, str):
        raise UnsafePickleError(f"_codecs.encode refused for a non-str argument {type(obj)}")
    return obj.encode(encoding, errors)


def _allowed_global(module: str, name: str) -> Any | None:
    """Resolves an allow-listed global, or returns None."""
    if module in ("builtins", "__builtin__"):
        return _BUILTINS.get(name)
    if module == "collections" and name in ("OrderedDict", "defaultdict"):
        return getattr(collections, name)
    if module in ("copy_reg", "copyreg") and name == "_reconstructor":
        return _safe_reconstructor
    if module == "_codecs" and name == "encode":
        return _codecs_encode
    if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        if name in ("_reconstruct", "scalar"):
            return getattr(_np_multiarray(), name)
        return None
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals of :func:`_allowed_global`."""

    def __init__(self, file, path: str, encoding: str):
        super().__init__(file, encoding=encoding)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed_global(module, name)
        if obj is None:
            raise UnsafePickleError(
                f"{self._path}: refused to load global '{module}.{name}': this pickle tries to "
                "create objects or call functions that dataset metadata never needs (it may be "
                "malicious or not an AttnGAN metadata file)"
            )
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._path}: persistent ids are not allowed ({pid!r})")


def _decode_bytes(obj: Any) -> Any:
    """Recursively turns ``bytes`` in lists/tuples/dicts/sets into ``str`` (UTF-8, else latin1)."""
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return obj.decode("latin1")
    if isinstance(obj, list):
        return [_decode_bytes(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(_decode_bytes(x) for x in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_decode_bytes(x) for x in obj)
    if isinstance(obj, collections.defaultdict):
        out = collections.defaultdict(obj.default_factory)
        out.update((_decode_bytes(k), _decode_bytes(v)) for k, v in obj.items())
        return out
    if isinstance(obj, dict):
        return type(obj)((_decode_bytes(k), _decode_bytes(v)) for k, v in obj.items())
    return obj


def load_pickle(path: str | os.PathLike) -> Any:
    """Loads a (Python-2 or Python-3) metadata pickle with the restricted unpickler.

    Args:
        path: the pickle file.

    Returns:
        The unpickled object, with Python-2 strings (and stray ``bytes``) as ``str``.

    Raises:
        MissingInputError: the file does not exist (a ``FileNotFoundError``).
        UnsafePickleError: the pickle references a global outside the allow-list.
        PickleFormatError: the file is not a readable pickle (a ``pickle.UnpicklingError``; the
            message names the file).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise MissingInputError(f"{path}: not found") from None
    hint = "the file is damaged or truncated: download or unzip it again"
    last_error: Exception | None = None
    for encoding in ("utf-8", "latin1"):
        try:
            obj = _RestrictedUnpickler(io.BytesIO(data), path, encoding).load()
        except UnsafePickleError:
            raise
        except (UnicodeDecodeError, UnicodeEncodeError, ValueError) as e:
            # UTF-8 cannot decode binary numpy data (or decodes it to a buffer of the wrong size).
            last_error = e
            continue
        except (
            pickle.UnpicklingError, EOFError, IndexError, KeyError, TypeError, AttributeError,
            ImportError, MemoryError, OverflowError, RecursionError,
        ) as e:  # fmt: skip
            raise PickleFormatError(f"{path}: not a readable pickle ({e!r}); {hint}") from None
        return _decode_bytes(obj)
    raise PickleFormatError(f"{path}: not a readable pickle ({last_error!r}); {hint}")
