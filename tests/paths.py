"""Paths the tests share: the repository and the ground truth beside it (``../shared``)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ATTNGAN_SHARED_DIR overrides where ../shared is (the parity fixtures have ATTNGAN_PARITY_DIR).
SHARED = os.environ.get("ATTNGAN_SHARED_DIR") or os.path.join(os.path.dirname(REPO), "shared")
KEYS_TSV = os.path.join(SHARED, "reference", "attngan_state_dict_keys.tsv")


def require_shared(path: str, what: str) -> str:
    """``path`` if it exists; else skip the test (a fork's fresh clone), or fail it under CI.

    The project's ground truth (parity fixtures, the original's key table) lives beside the clone in
    ``../shared``, not in the repository. A fork without it still starts green: the tests that
    need it skip and say what is missing. Under ``CI=true`` a missing file fails, as the project's
    own CI must run them.
    """
    import pytest

    if os.path.exists(path):
        return path
    msg = (
        f"{what} not found at {path}: it is the project's ground truth beside the clone "
        "(../shared; set ATTNGAN_SHARED_DIR / ATTNGAN_PARITY_DIR to where it is)"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


def state_dict_section(title: str) -> dict:
    """Zero arrays of the shapes that ``KEYS_TSV`` lists under ``## <title>:`` (a torch state dict)."""
    import re

    import numpy as np

    require_shared(KEYS_TSV, "the original's state-dict key table")
    sd, on = {}, False
    for line in open(KEYS_TSV):
        if line.startswith("## "):
            on = line.startswith(f"## {title}:")
        elif on and line.strip() and not line.startswith("#"):
            key, shape = line.rstrip("\n").split("\t")
            sd[key] = np.zeros(tuple(int(s) for s in re.findall(r"\d+", shape)), np.float32)
    assert sd, title
    return sd
