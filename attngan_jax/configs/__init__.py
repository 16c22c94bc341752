"""The experiment config files, shipped with the package so that an installed wheel can train.

Each ``<name>.py`` here is one experiment (``get_config(variant)``, its command in the docstring).
In a clone, ``configs/<name>.py`` at the top of the repository re-exports it, so the documented
``--config=configs/shapes.py:tiny`` works as before; anywhere else the flag takes the packaged
file by name (``--config=shapes:tiny``) or by its documented path (:func:`resolve`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT = "shapes"  # what ``train.py`` / ``attngan-train`` without ``--config`` runs


def names() -> list[str]:
    """The packaged experiments, e.g. ``["attngan_birds", ..., "shapes"]``."""
    return sorted(f[:-3] for f in os.listdir(DIR) if f.endswith(".py") and not f.startswith("_"))


def path(name: str) -> str:
    """The packaged file of experiment ``name`` (``"shapes"`` -> ``.../attngan_jax/configs/shapes.py``)."""
    return os.path.join(DIR, f"{name}.py")


def resolve(value: str) -> str:
    """A ``--config`` value with a packaged experiment's name or documented path made a file path.

    ``value`` is ``PATH[:VARIANT]``. An existing file is kept. Otherwise ``NAME``, ``NAME.py`` and
    ``configs/NAME.py`` (the path in a clone, which a wheel user has not got) name the packaged
    ``attngan_jax/configs/NAME.py``; anything else is kept, so a missing file still fails with
    the config flag's own error.

    Args:
        value: the flag's value, e.g. ``"shapes:tiny"`` or ``"configs/attngan_birds.py"``.

    Returns:
        ``value`` with its path part replaced by the packaged file where one is meant.
    """
    file, colon, variant = value.partition(":")
    if os.path.isfile(file):
        return value
    folder, base = os.path.split(os.path.normpath(file)) if file else ("", "")
    name = base.removesuffix(".py")
    if folder not in ("", "configs") or name not in names():
        return value
    return f"{path(name)}{colon}{variant}"


def resolve_argv(argv: Sequence[str], flag: str = "config") -> list[str]:
    """``argv`` with every ``--config=VALUE`` / ``--config VALUE`` passed through :func:`resolve`.

    Runs before ``ml_collections`` defines the flag: it reads ``sys.argv`` at definition time.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        for dashes in ("--", "-"):
            if arg.startswith(f"{dashes}{flag}="):
                out[i] = f"{dashes}{flag}={resolve(arg.split('=', 1)[1])}"
            elif arg == f"{dashes}{flag}" and i + 1 < len(out):
                out[i + 1] = resolve(out[i + 1])
    return out
