"""What the programs (``train.py``, ``eval.py``: :mod:`attngan_jax.commands`) share: flags, errors.

A wrong input (:class:`~attngan_jax.errors.InputError`), a flag absl cannot parse or a config file
that does not load ends the program with one line ``error: <message>`` on stderr and exit status
:data:`EXIT_USAGE`, no traceback; other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from collections.abc import Iterator, Sequence
from typing import NoReturn

from attngan_jax.errors import InputError

EXIT_USAGE = 2  # the shell convention for a usage error (argparse and absl's UsageError use 2)


def one_line(message: object) -> str:
    """``message`` with its whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(message).split())


def fail(message: object) -> NoReturn:
    """Prints ``error: <message>`` (one line) to stderr and exits with :data:`EXIT_USAGE`."""
    sys.stdout.flush()
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USAGE)


@contextlib.contextmanager
def report_input_errors() -> Iterator[None]:
    """Turns an :class:`InputError` raised in the block into :func:`fail`."""
    try:
        yield
    except InputError as e:
        fail(e)


def parse_flags(argv: Sequence[str], flag_values=None) -> list[str]:
    """The ``flags_parser`` of ``app.run``: a flag error is one ``error:`` line, exit 2.

    absl's own parser prints ``FATAL Flags parsing error`` and, when a config file's
    ``get_config`` raised, the whole traceback inside that message; here it is the flag and the
    exception's message only.
    """
    from absl import flags

    try:
        return (flag_values or flags.FLAGS)(list(argv))
    except flags.Error as e:
        text = str(e)
        if "Traceback (most recent call last)" in text:  # config_flags wraps get_config's error
            flag = text.split(": ", 1)[0]
            last = [line for line in text.splitlines() if line.strip()][-1]
            text = f"{flag}: {last.split(': ', 1)[-1]}"
        fail(f"{text} (see --helpfull)")
    except SyntaxError as e:  # a config file that is not valid Python
        fail(f"{e.filename}:{e.lineno}: {e.msg} (a syntax error in the config file)")


def config_load_error(flag_value: str, error: BaseException) -> str:
    """The message for a ``--config`` file that did not load (``ml_collections`` defers it)."""
    cause = error.__cause__ or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return (
        f"--config={flag_value}: the config file did not load ({lines[-1] if lines else cause}); "
        "pass a file of configs/ or a packaged experiment's name, e.g. --config=configs/shapes.py "
        "or --config=shapes"
    )


def unknown_override(config, argv: Sequence[str], prefix: str = "config") -> str | None:
    """The message for the first ``--config.a.b=...`` in ``argv`` naming a key ``config`` lacks.

    ``ml_collections`` resolves these overrides while the flag is defined and fails with a bare
    ``AttributeError``; this names the flag and the closest existing key.

    Args:
        config: the (default) config the overrides are resolved against.
        argv: the command line.
        prefix: the config flag's name.

    Returns:
        The message, or None when every override names an existing key.
    """
    for arg in argv:
        if not arg.startswith(f"--{prefix}."):
            continue
        path = arg[2:].split("=", 1)[0].split(".")[1:]
        node, done = config, [prefix]
        for key in path:
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if key not in keys:
                flag = "--" + ".".join([*done, key])
                close = difflib.get_close_matches(key, [str(k) for k in keys], n=1)
                if close:
                    return (
                        f"{flag}: no such config key; did you mean --{'.'.join([*done, close[0]])}?"
                    )
                known = ", ".join(sorted(str(k) for k in keys)) or "none, it is not a group"
                return f"{flag}: no such config key (keys of {'.'.join(done)}: {known})"
            node, done = node[key], [*done, key]
    return None
