"""MetricWriter writes readable TensorBoard events; progress shows rate/ETA; check_finite."""

import glob
import io
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboardX.proto import event_pb2

from attngan_jax.runtime.observe import MetricWriter, NonFiniteLossError, check_finite, progress


def read_events(logdir):
    """Parses TFRecord-framed Event protos: [u64 len][u32 crc][data][u32 crc]."""
    events = []
    for path in sorted(glob.glob(f"{logdir}/events.out.tfevents.*")):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos : pos + 8])
            events.append(event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n]))
            pos += 12 + n + 4
    return events


def test_metric_writer_scalars_and_images_round_trip(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    with MetricWriter(tmp_path) as w:
        w.write_scalars(5, {"loss/d": 1.25, "loss/g": jnp.float32(-0.5), "lr": np.float64(2e-4)})
        w.write_scalars(6, {"loss/d": jnp.asarray([0.75])})
        w.write_images(6, {"samples": img})
        w.flush()
        with pytest.raises(ValueError, match="uint8 HWC"):
            w.write_images(7, {"bad": img.astype(np.float32)})
    scalars, images = {}, {}
    for e in read_events(tmp_path):
        for v in e.summary.value:
            if v.HasField("image"):
                images[(v.tag, e.step)] = np.asarray(
                    Image.open(io.BytesIO(v.image.encoded_image_string))
                )
            else:
                scalars[(v.tag, e.step)] = v.simple_value
    assert scalars == {
        ("loss/d", 5): 1.25,
        ("loss/g", 5): -0.5,
        ("lr", 5): pytest.approx(2e-4),
        ("loss/d", 6): 0.75,
    }
    assert list(images) == [("samples", 6)]
    np.testing.assert_array_equal(images[("samples", 6)], img)  # PNG is lossless


def test_progress_shows_rate_and_eta():
    buf = io.StringIO()  # not a TTY: still enabled
    bar = progress(100, initial=40, desc="train", file=buf)
    for _ in range(10):
        bar.update(1)
    bar.refresh()
    bar.close()
    out = buf.getvalue()
    assert "train" in out and "50/100" in out
    assert "step/s" in out or "s/step" in out  # rate
    assert "<" in out  # elapsed<remaining (ETA)


def test_check_finite_passes_on_finite_metrics():
    check_finite({"d": jnp.float32(1.0), "g": np.ones(3), "n": 3, "b": jnp.bfloat16(2)}, step=1)


def test_check_finite_names_step_and_every_bad_loss():
    metrics = {
        "loss_d": jnp.float32(0.3),
        "loss_g": jnp.float32(np.nan),
        "kl": np.float64(np.inf),
        "per_stage": jnp.asarray([1.0, np.nan, -np.inf]),
        "half": jnp.asarray(np.nan, jnp.bfloat16),
        "nested": {"w": jnp.float32(-np.inf)},
    }
    with pytest.raises(NonFiniteLossError) as info:
        check_finite(metrics, step=1234)
    err = info.value
    assert err.step == 1234
    assert sorted(err.names) == ["half", "kl", "loss_g", "nested/w", "per_stage"]
    msg = str(err)
    assert "step 1234" in msg and "loss_d" not in msg
    for part in ["loss_g=nan", "kl=inf", "per_stage=<1 nan, 1 inf of 3>", "nested/w=-inf"]:
        assert part in msg, msg
