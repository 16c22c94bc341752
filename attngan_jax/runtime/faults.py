"""Crash points for the crash-safety tests: ``ATTNGAN_CRASH_AT=<tag>`` SIGKILLs the process there.

The project promises that a ``kill -9`` at any moment leaves nothing partial that a rerun trusts
(docs/crash_safety.md). ``tests/test_crash_safety.py`` proves it at the moments that write
files, which are too short to hit reliably from outside: each such place calls :func:`point` with
a tag, and a process started with ``ATTNGAN_CRASH_AT`` equal to that tag kills itself with SIGKILL
(a real ``kill -9``: no Python cleanup, no ``finally``) when it gets there. Unset, :func:`point`
costs one dictionary lookup.

Tags (``<phase>`` is the phase directory's name, ``damsm`` or ``attngan``):

- ``prepare:<split>:<i>``: the dataset generator is at example ``i`` of ``split``;
- ``step:<phase>:<n>``: step ``n`` has run;
- ``checkpoint:<phase>:<n>``: the checkpoint of step ``n`` is being written (not committed);
- ``export:<phase>:<part>``: a model part is written under its temporary name, not renamed;
- ``record:<phase>``: the phase's exports are complete, ``phase.json`` is not written;
- ``evaluate``: the final evaluation has started.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "ATTNGAN_CRASH_AT"


def point(tag: str) -> None:
    """SIGKILLs this process if ``$ATTNGAN_CRASH_AT`` equals ``tag``."""
    if os.environ.get(ENV_VAR) == tag:
        os.kill(os.getpid(), signal.SIGKILL)
