"""Persistent XLA compilation cache: a second run of the same program skips XLA compilation.

``enable()`` points JAX's persistent cache at a directory (``$ATTNGAN_JAX_CACHE``, else
``~/.cache/attngan_jax/jax_cache``) and lowers JAX's default thresholds (programs that compiled in
under 1 s were not stored) so that every jitted function is cached, including the small CPU ones.
Call it once, early (before the first ``jit`` compiles); ``train.py`` and ``eval.py`` do::

    from attngan_jax.runtime import compilation_cache
    compilation_cache.enable()

Entries are keyed by the program, the jax/jaxlib version, the backend and the XLA flags, so a
changed model, dtype, batch size or jaxlib never reuses a stale entry. ``ATTNGAN_JAX_CACHE=off``
(or ``none``/``0``) disables it. The directory may be deleted at any time.
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger(__name__)

ENV_VAR = "ATTNGAN_JAX_CACHE"
_DISABLED = ("off", "none", "0", "false")


def default_dir() -> str | None:
    """``$ATTNGAN_JAX_CACHE`` or ``~/.cache/attngan_jax/jax_cache``; None when disabled."""
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip().lower() in _DISABLED:
        return None
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(os.path.expanduser("~"), ".cache", "attngan_jax", "jax_cache")


def enable(
    cache_dir: str | None = None, min_compile_time_s: float = 0.0, min_entry_size_bytes: int = 0
) -> str | None:
    """Turns on JAX's persistent compilation cache.

    Args:
        cache_dir: cache directory; None uses :func:`default_dir`.
        min_compile_time_s: only programs that took at least this long to compile are stored
            (JAX's default is 1 s; 0 stores everything).
        min_entry_size_bytes: only entries at least this large are stored (0 = all).

    Returns:
        The directory in use, or None when disabled via ``$ATTNGAN_JAX_CACHE`` or when the
        directory cannot be created (a warning is logged; compilation then works as usual).
    """
    path = cache_dir if cache_dir is not None else default_dir()
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        log.warning("compilation cache disabled: cannot create %s (%s)", path, e)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_entry_size_bytes))
    _reset_jax_cache_state()
    return path


def disable() -> None:
    """Turns the persistent cache off again (used by tests)."""
    jax.config.update("jax_compilation_cache_dir", None)
    _reset_jax_cache_state()


def _reset_jax_cache_state() -> None:
    """Makes JAX re-read the cache settings if it already initialised its cache in this process."""
    try:
        from jax._src import compilation_cache as cc

        cc.reset_cache()
    except (ImportError, AttributeError):  # private API moved: settings apply to new processes
        pass
