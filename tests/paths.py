"""Paths the tests share: the repository and the ground truth beside it (``../shared``)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ATTNGAN_SHARED_DIR overrides where ../shared is (the parity fixtures have ATTNGAN_PARITY_DIR).
SHARED = os.environ.get("ATTNGAN_SHARED_DIR") or os.path.join(os.path.dirname(REPO), "shared")
KEYS_TSV = os.path.join(SHARED, "reference", "attngan_state_dict_keys.tsv")
