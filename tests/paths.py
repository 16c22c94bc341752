"""Paths the tests share: the repository and the ground truth beside it (``../shared``)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ATTNGAN_SHARED_DIR overrides where ../shared is (the parity fixtures have ATTNGAN_PARITY_DIR).
SHARED = os.environ.get("ATTNGAN_SHARED_DIR") or os.path.join(os.path.dirname(REPO), "shared")
KEYS_TSV = os.path.join(SHARED, "reference", "attngan_state_dict_keys.tsv")


def state_dict_section(title: str) -> dict:
    """Zero arrays of the shapes that ``KEYS_TSV`` lists under ``## <title>:`` (a torch state dict)."""
    import re

    import numpy as np

    assert os.path.exists(KEYS_TSV), f"missing {KEYS_TSV}"
    sd, on = {}, False
    for line in open(KEYS_TSV):
        if line.startswith("## "):
            on = line.startswith(f"## {title}:")
        elif on and line.strip() and not line.startswith("#"):
            key, shape = line.rstrip("\n").split("\t")
            sd[key] = np.zeros(tuple(int(s) for s in re.findall(r"\d+", shape)), np.float32)
    assert sd, title
    return sd
