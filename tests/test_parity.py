"""Generic parity test: every case in the fixture directory, driven by its JSON sidecar."""

import os

import pytest
from paths import require_shared

from attngan_jax.parity import default_dir, list_cases, run_case

_DIR = default_dir()
_CASES = list_cases(_DIR) if os.path.isdir(_DIR) else ["<fixture directory missing>"]


@pytest.mark.parametrize("name", _CASES)
def test_parity_case(name):
    require_shared(_DIR, "the parity fixture directory")
    checks = run_case(_DIR, name)
    assert checks
    lines = []
    for c in checks:
        lines.append(f"{name} {c.name}: max_abs_err={c.max_abs_err:.3e} (tol {c.tol:.1e})")
        print(lines[-1])
    bad = [line for c, line in zip(checks, lines) if not c.ok]
    assert not bad, "\n".join(bad)


def test_unknown_kind_fails(tmp_path):
    import json

    import numpy as np

    (tmp_path / "x.json").write_text(json.dumps({"kind": "no_such_kind"}))
    np.savez(tmp_path / "x.npz", **{"out:y": np.zeros(1)})
    with pytest.raises(KeyError):
        run_case(str(tmp_path), "x")
