"""Atomic writes: whoever reads a path sees the old file or the new one, never half of one.

The project's crash-safety rule for files (docs/crash_safety.md), owned here and used by every
place that writes a file a later run or reader trusts:

1. write to a unique temporary name in the *same directory* as the destination
   (``.tmp-<name>-<8 hex>``: same file system, so the rename below is atomic; unique, so two
   writers of one path never write into the same temporary file);
2. flush and ``fsync`` it, so the data is on disk before its name is;
3. ``os.replace`` it onto the destination.

An exception while writing (full disk, a value ``json`` cannot encode, Ctrl-C) deletes the
temporary file and leaves the previous file, if any, intact. A ``kill -9`` while writing can leave
the hidden temporary file (no Python cleanup runs then) but never a partial file under the real
name; ``.tmp-*`` is what the leftover cleaners (``model_dir.clean_leftovers``) and the crash-safety
tests look for.

Directories (a model part, ``best/``, the shipped model) are written whole under a temporary name
by their caller and swapped in with :func:`replace_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import IO, Any


def temp_name(path: str | os.PathLike) -> str:
    """A fresh temporary path beside ``path``: ``<dir>/.tmp-<name>-<8 hex>``."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".tmp-{name}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def replacing(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Opens a temporary file that replaces ``path`` when the ``with`` block ends without error.

    Args:
        path: the destination; its parent directories are created.
        mode: ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``.
        **open_kwargs: passed to :func:`open` (``encoding``, ``newline``, ...).

    Yields:
        The open temporary file (seekable: ``zipfile`` and ``np.savez`` may write into it).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, mode.replace("w", "x"), **open_kwargs) as f:  # "x": never someone else's
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see the module docstring)."""
    with replacing(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with replacing(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any, **json_kwargs: Any) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically.

    Args:
        path: the destination; its parent directories are created.
        obj: anything ``json.dump`` takes.
        **json_kwargs: passed to :func:`json.dump` (``indent``, ``sort_keys``, ``default``, ...).
    """
    with replacing(path, "w") as f:
        json.dump(obj, f, **json_kwargs)


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Puts the complete directory ``src`` at ``dst``, replacing what was there.

    A directory cannot be renamed over a non-empty one, so an existing ``dst`` is first moved
    aside to ``<parent>/.old-<name>-<8 hex>``, then ``src`` is renamed to ``dst`` and the old one
    deleted. ``dst`` is always either the old directory or the new one; a ``kill -9`` between the
    two renames leaves no ``dst`` and the old one under ``.old-<name>-*``, which the caller's
    recovery puts back or deletes (``train.evaluation``, ``model_dir.clean_leftovers``).

    Args:
        src: the new directory, complete (e.g. written under :func:`temp_name`), on the same file
            system as ``dst``.
        dst: where it goes.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.exists(dst):
        os.replace(src, dst)
        return
    parent, name = os.path.split(os.path.abspath(dst))
    old = os.path.join(parent, f".old-{name}-{uuid.uuid4().hex[:8]}")
    os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old)
