"""Type aliases used in signatures and docstrings."""

from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any
Batch = dict[str, Any]
