"""The XLA:CPU flags module: adds each flag once, keeps the user's settings."""

import os

from attngan_jax import _xla_flags


def _apply_with(monkeypatch, flags):
    monkeypatch.setattr(_xla_flags, "_accelerator_present", lambda: False)
    monkeypatch.setattr(_xla_flags, "_jaxlib_knows_flags", lambda: True)
    monkeypatch.delenv("ATTNGAN_KEEP_XLA_FLAGS", raising=False)
    if flags is None:
        monkeypatch.delenv("XLA_FLAGS", raising=False)
    else:
        monkeypatch.setenv("XLA_FLAGS", flags)
    _xla_flags.apply()
    return os.environ["XLA_FLAGS"].split()


def test_adds_every_cpu_flag_once(monkeypatch):
    assert _apply_with(monkeypatch, None) == list(_xla_flags.CPU_FLAGS)
    assert _apply_with(monkeypatch, " ".join(_xla_flags.CPU_FLAGS)) == list(_xla_flags.CPU_FLAGS)


def test_keeps_the_users_value_of_a_flag(monkeypatch):
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    got = _apply_with(monkeypatch, f"--xla_force_host_platform_device_count=2 {mine}")
    assert got == ["--xla_force_host_platform_device_count=2", mine, _xla_flags.CPU_CONV_FLAG]


def test_opt_out_leaves_xla_flags_alone(monkeypatch):
    monkeypatch.setenv("ATTNGAN_KEEP_XLA_FLAGS", "1")
    monkeypatch.setenv("XLA_FLAGS", "--foo")
    _xla_flags.apply()
    assert os.environ["XLA_FLAGS"] == "--foo"
