"""The programs ``train.py`` and ``eval.py``, also installed as console scripts.

Each program starts four ways, all the same program::

    python train.py ...                       # in a clone (train.py is a shim)
    attngan-train ...                         # installed: setup.cfg's console script
    python -m attngan_jax.commands.train ...

and likewise ``eval.py`` / ``attngan-eval`` / ``python -m attngan_jax.commands.eval``;
``attngan-serve`` (``python -m attngan_jax.commands.serve``) is ``eval.py --mode=serve``.

Every start does the entry points' duties (DEVELOPERS.md) before JAX is imported:
:func:`prepare_process` appends the XLA:CPU flags to ``XLA_FLAGS`` and restarts the process once
with the malloc tunables. The restart re-executes ``sys.orig_argv``: the interpreter with the
script it ran (``train.py``, or a console script such as ``.../bin/attngan-train``) or its ``-m``
module, and every argument. This package therefore imports neither JAX nor absl: a console script
imports it, and calls one of the ``attngan_*`` functions, before those duties are done.
"""

from __future__ import annotations

import importlib
import sys

from attngan_jax import cli, configs
from attngan_jax.runtime import host_memory, xla_flags


def prepare_process(program: str) -> None:
    """The entry points' duties, first thing in every start of ``program`` (``train``/``eval``).

    Appends the XLA:CPU flags (before JAX starts its backend; kept by the restart), restarts the
    process once with the malloc tunables, and for ``train`` resolves a packaged config name in
    ``--config`` (:func:`attngan_jax.configs.resolve`; before ``ml_collections`` reads ``sys.argv``).
    """
    xla_flags.apply()
    # glibc reads its malloc tunables only at start-up: restart once with them
    host_memory.reexec_with_malloc_tunables()
    if program == "train":
        sys.argv[:] = configs.resolve_argv(sys.argv)


def present_as_main(module) -> None:
    """Makes ``--help`` show ``module``'s docstring and flags when it is not ``__main__``.

    absl's help prints ``__main__``'s docstring and the flags defined there; under a console
    script or a shim, ``__main__`` is that small file and the program's flags live in ``module``.
    """
    from absl import flags

    main = sys.modules["__main__"]
    if main is module:
        return
    main.__doc__ = module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def _start(program: str) -> None:
    prepare_process(program)
    importlib.import_module(f"attngan_jax.commands.{program}").run()


def attngan_train() -> None:
    """``attngan-train`` (and ``python train.py``): training, :mod:`attngan_jax.commands.train`."""
    _start("train")


def attngan_eval() -> None:
    """``attngan-eval`` (and ``python eval.py``): sample, metrics or serve, :mod:`.eval`."""
    _start("eval")


def attngan_serve() -> None:
    """``attngan-serve``: ``attngan-eval --mode=serve`` (the local page)."""
    if any(a == "-mode" or a.startswith(("--mode", "-mode=")) for a in sys.argv[1:]):
        cli.fail("attngan-serve is attngan-eval --mode=serve: give no --mode")
    sys.argv[1:1] = ["--mode=serve"]
    _start("eval")
