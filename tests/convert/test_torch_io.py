"""``.pth`` reading: both PyTorch formats, weights-only (a checkpoint cannot run code)."""

import os

import numpy as np
import pytest

from attngan_jax.convert import ConversionError, load_state_dict

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("legacy", [False, True])
def test_pth_round_trip(tmp_path, legacy):
    sd = {"rnn.weight_ih_l0": torch.randn(8, 4), "bn.num_batches_tracked": torch.tensor(3)}
    path = str(tmp_path / "m.pth")
    # legacy=True is the pre-zip format of the PyTorch-0.3 release files
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    out = load_state_dict(path)
    np.testing.assert_array_equal(out["rnn.weight_ih_l0"], sd["rnn.weight_ih_l0"].numpy())
    assert out["bn.num_batches_tracked"] == 3


def test_pth_wrapped_state_dict(tmp_path):
    path = str(tmp_path / "ckpt.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    assert list(load_state_dict(path)) == ["w"]


class _Evil:
    def __reduce__(self):
        return (os.system, (f"echo pwned > {_Evil.target}",))


def test_pth_that_runs_code_is_refused(tmp_path):
    _Evil.target = str(tmp_path / "pwned")
    path = str(tmp_path / "evil.pth")
    torch.save({"w": torch.ones(1), "x": _Evil()}, path)
    with pytest.raises(ConversionError, match="weights-only"):
        load_state_dict(path)
    assert not os.path.exists(_Evil.target)
