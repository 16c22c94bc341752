"""runtime.atomic: a write that fails leaves the old file whole and no temporary file."""

import json
import os

import numpy as np
import pytest

from attngan_jax.runtime import atomic


def test_write_json_replaces_and_leaves_only_the_file(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic.write_json(path, {"x": 1})
    atomic.write_json(path, {"x": 2}, indent=2, sort_keys=True)
    assert json.loads(path.read_text()) == {"x": 2}
    assert path.read_text() == json.dumps({"x": 2}, indent=2, sort_keys=True)
    assert os.listdir(tmp_path / "sub") == ["a.json"]


def test_failure_while_writing_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    atomic.write_json(path, {"old": [1, 2, 3]})
    before = path.read_bytes()
    with pytest.raises(TypeError):  # json.dump fails half-way: "x" was written, the set was not
        atomic.write_json(path, {"a": "x" * 10000, "b": {1, 2}})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.json"]


def test_failure_in_the_with_block_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.bin"
    atomic.write_bytes(path, b"old")
    with pytest.raises(KeyboardInterrupt), atomic.replacing(path, "wb") as f:
        f.write(b"half of the new")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


def test_failure_on_a_new_path_leaves_nothing(tmp_path):
    with pytest.raises(ValueError), atomic.replacing(tmp_path / "new.txt") as f:
        f.write("partial")
        raise ValueError("stop")
    assert os.listdir(tmp_path) == []


def test_temporary_name_is_hidden_unique_and_beside_the_file(tmp_path):
    a, b = atomic.temp_name(tmp_path / "x.json"), atomic.temp_name(tmp_path / "x.json")
    assert a != b
    assert os.path.dirname(a) == str(tmp_path)
    assert os.path.basename(a).startswith(".tmp-x.json-")


def test_the_temporary_file_is_what_the_block_writes(tmp_path):
    path = tmp_path / "s.npz"
    with atomic.replacing(path, "wb") as f:
        assert os.path.basename(f.name).startswith(".tmp-s.npz-") and not path.exists()
        np.savez(f, mu=np.arange(3))
    np.testing.assert_array_equal(np.load(path)["mu"], np.arange(3))


def test_write_text_is_utf8(tmp_path):
    atomic.write_text(tmp_path / "t.txt", "größe\n")
    assert (tmp_path / "t.txt").read_bytes() == "größe\n".encode()


def test_replace_dir(tmp_path):
    dst = tmp_path / "best"
    new = tmp_path / ".tmp-best-1"
    new.mkdir()
    (new / "f").write_text("1")
    atomic.replace_dir(new, dst)  # no previous directory
    assert (dst / "f").read_text() == "1"
    new = tmp_path / ".tmp-best-2"
    new.mkdir()
    (new / "f").write_text("2")
    atomic.replace_dir(new, dst)  # the old one moved aside, then deleted
    assert (dst / "f").read_text() == "2"
    assert os.listdir(tmp_path) == ["best"]


def test_text_mode_only_w_or_wb(tmp_path):
    with pytest.raises(ValueError), atomic.replacing(tmp_path / "a", "a"):
        pass
