"""The error a user's input raises: the entry points print its message on one line and exit 2.

Every reader of user input (caption and image folders, original-layout pickles, weight and
checkpoint files, configs, captions at sampling time) raises :class:`InputError` (or a subclass,
e.g. :class:`~attngan_jax.data.text.DataError`) whose message names the file or config key and
the fix. ``train.py`` and ``eval.py`` print it as ``error: <message>`` without a traceback
(:func:`attngan_jax.cli.report_input_errors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """A user's input is wrong; the message names the file or key and the fix.

    A ``ValueError`` subclass, so callers that catch ``ValueError`` keep working.
    """


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the user named (or the layout requires) does not exist."""


class InputKeyError(InputError, KeyError):
    """A file lacks an entry it must have (also a ``KeyError``); ``str`` is the plain message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
