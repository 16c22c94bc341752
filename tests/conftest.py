"""Test configuration: full-precision float32 math and the fixture directory."""

import os

import jax
import pytest

import attngan_jax  # noqa: F401  (sets the XLA:CPU flag before JAX starts)

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def parity_dir() -> str:
    from attngan_jax.parity import default_dir

    d = default_dir()
    if not os.path.isdir(d):
        pytest.fail(f"parity fixture directory not found: {d} (set ATTNGAN_PARITY_DIR)")
    return d
