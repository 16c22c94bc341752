"""The XLA:CPU flags module: adds each flag once, keeps the user's settings."""

import os

from attngan_jax.runtime import xla_flags


def _apply_with(monkeypatch, flags):
    monkeypatch.setattr(xla_flags, "_accelerator_present", lambda: False)
    monkeypatch.setattr(xla_flags, "_jaxlib_knows_flags", lambda: True)
    monkeypatch.delenv("ATTNGAN_KEEP_XLA_FLAGS", raising=False)
    if flags is None:
        monkeypatch.delenv("XLA_FLAGS", raising=False)
    else:
        monkeypatch.setenv("XLA_FLAGS", flags)
    xla_flags.apply()
    return os.environ["XLA_FLAGS"].split()


def test_adds_every_cpu_flag_once(monkeypatch):
    assert _apply_with(monkeypatch, None) == list(xla_flags.CPU_FLAGS)
    assert _apply_with(monkeypatch, " ".join(xla_flags.CPU_FLAGS)) == list(xla_flags.CPU_FLAGS)


def test_keeps_the_users_value_of_a_flag(monkeypatch):
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    got = _apply_with(monkeypatch, f"--xla_force_host_platform_device_count=2 {mine}")
    assert got == ["--xla_force_host_platform_device_count=2", mine, xla_flags.CPU_CONV_FLAG]


def test_opt_out_leavesxla_flags_alone(monkeypatch):
    monkeypatch.setenv("ATTNGAN_KEEP_XLA_FLAGS", "1")
    monkeypatch.setenv("XLA_FLAGS", "--foo")
    xla_flags.apply()
    assert os.environ["XLA_FLAGS"] == "--foo"
