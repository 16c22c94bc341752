"""Host (CPU RAM) memory housekeeping."""

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping

MALLOC_TUNABLES = ("glibc.malloc.hugetlb=1",)
"""glibc tunables that ``reexec_with_malloc_tunables`` adds to ``GLIBC_TUNABLES``.

``hugetlb=1`` makes glibc ``madvise`` its ``mmap``-ed chunks for transparent huge pages. XLA:CPU
allocates each step's scratch buffer (XLA's ``temp_size``) afresh; above glibc's mmap threshold
that is a new mapping every step, so every 4 KB page of it faulted in again each step, at a cost
of kernel CPU time in every iteration. With huge pages the faults drop to a few hundred (the
kernel still zeroes the memory), so steps run faster at an equal or lower peak RSS (figures in
docs/performance.md).
"""
_MARK = "ATTNGAN_MALLOC_TUNED"


def release_freed_host_memory() -> None:
    """Returns the C heap's free pages to the OS (glibc ``malloc_trim``); a no-op elsewhere.

    XLA's compiler frees most of what it allocated once an executable is built, but glibc keeps
    those pages, so the first step's buffers came on top of them; called between compiling and
    running the step, it lowers the peak RSS (docs/performance.md).
    """
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def glibc_version() -> tuple[int, int] | None:
    """``(major, minor)`` of the running glibc, or None when the C library is not glibc."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = (int(p) for p in version.split(".")[:2])
    except (AttributeError, ValueError, OSError):
        return None
    return (major, minor) if name == "glibc" else None


def tuned_environ(environ: Mapping[str, str], glibc: tuple[int, int] | None) -> dict | None:
    """The environment to re-execute with so that glibc reads ``MALLOC_TUNABLES``, or None.

    None when there is nothing to do: ``ATTNGAN_KEEP_MALLOC`` is set, this process is already the
    re-executed one, the C library is not glibc 2.35+ (where ``glibc.malloc.hugetlb`` appeared), or
    ``GLIBC_TUNABLES`` already names every tunable (a user's own value is kept).

    Args:
        environ: the current environment.
        glibc: ``glibc_version()``.

    Returns:
        A copy of ``environ`` with the missing tunables appended to ``GLIBC_TUNABLES``, or None.
    """
    if environ.get("ATTNGAN_KEEP_MALLOC") or environ.get(_MARK):
        return None
    if glibc is None or glibc < (2, 35):
        return None
    have = environ.get("GLIBC_TUNABLES", "")
    named = {item.split("=")[0] for item in have.split(":") if item}
    missing = [t for t in MALLOC_TUNABLES if t.split("=")[0] not in named]
    if not missing:
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = ":".join([have, *missing] if have else missing)
    env[_MARK] = "1"
    return env


def reexec_with_malloc_tunables(execve: Callable = os.execve) -> None:
    """Restarts this Python process with ``MALLOC_TUNABLES`` in ``GLIBC_TUNABLES`` (Linux/glibc).

    glibc reads its tunables only when a process starts, so the entry points (``train.py``,
    ``eval.py``, the console scripts, ``benchmarks/train_step.py``) call this first, before JAX is
    imported: the process replaces itself (same interpreter, arguments and environment plus the
    tunables) once, which costs a few tens of milliseconds. It re-executes ``sys.orig_argv``: the
    script as started (``train.py``, a console script's path such as ``bin/attngan-train``) or its
    ``-m`` module, not ``sys.argv`` (which absl or a console script may have changed). Set ``ATTNGAN_KEEP_MALLOC=1`` to skip it. If the exec fails,
    the current process simply goes on.

    Args:
        execve: ``os.execve`` (injectable for tests).
    """
    env = tuned_environ(os.environ, glibc_version())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        execve(sys.executable, sys.orig_argv, env)
    except OSError:
        pass
