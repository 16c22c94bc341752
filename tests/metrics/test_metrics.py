"""Metrics: IS, FID statistics, R-precision, TF checkpoint reading (V1 + V2), StackGAN mapping.

The TF checkpoints are written here by a small independent writer that follows the on-disk
format (LevelDB table + tensor_bundle.proto / saved_tensor_slice.proto); V1 TensorProtos are
serialised with tensorboardX's compiled ``tensor_pb2`` (an encoder that is not ours).
"""

import os
import struct

import numpy as np
import pytest
from scipy import linalg

from attngan_jax.metrics import fid, inception_score, r_precision, stackgan_inception, tf_checkpoint


# ------------------------------------------------------------------------------------------ IS
def test_is_uniform_is_one_and_one_hot_is_num_classes():
    assert inception_score.inception_score(np.full((100, 7), 1 / 7), splits=10)[0] == pytest.approx(
        1.0, abs=1e-12
    )
    onehot = np.eye(5)[
        np.tile(np.arange(5), 20)
    ]  # 100 rows, each split of 10 holds every class twice
    mean, std = inception_score.inception_score(onehot, splits=10)
    assert mean == pytest.approx(5.0, rel=1e-12) and std < 1e-12


def test_is_matches_direct_formula_and_logits_path():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(103, 11)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for i in range(10):  # the improved-gan / StackGAN loop
        part = p[i * 103 // 10 : (i + 1) * 103 // 10]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    want = (np.mean(scores), np.std(scores))
    np.testing.assert_allclose(inception_score.inception_score(p), want, rtol=1e-12)
    np.testing.assert_allclose(
        inception_score.inception_score(logits, from_logits=True), want, rtol=1e-10
    )


def test_is_stackgan_options():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(150, 51)) * 2
    got = inception_score.inception_score(logits, **inception_score.stackgan_cub_options())
    # by hand: drop logit 0, softmax over 50, keep floor(150/64)*64 = 128 rows
    want = inception_score.inception_score(logits[:128, 1:], from_logits=True)
    assert got == want
    with pytest.raises(ValueError, match="logits"):
        inception_score.inception_score(logits, drop_background=True)


@pytest.mark.parametrize("full_batches_of", [None, 64])
def test_streaming_is_equals_batch(full_batches_of):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(997, 51)) * 2
    kw = dict(splits=10, from_logits=True, drop_background=True, full_batches_of=full_batches_of)
    acc = inception_score.InceptionScoreAccumulator(997, 50, **kw)
    for start in range(0, 997, 37):  # batches straddle split boundaries
        acc.update(logits[start : start + 37])
    np.testing.assert_allclose(
        acc.result(), inception_score.inception_score(logits, **kw), rtol=1e-10, atol=1e-12
    )
    assert acc.sum_p.size + acc.sum_plogp.size == 10 * 51  # splits * (C + 1), independent of N


def test_streaming_is_adapter_and_errors():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6))
    batches = [x[i : i + 8] for i in range(0, 40, 8)]
    got = inception_score.inception_score_from_batches(lambda b: b * 2.0, batches, 40, 6, splits=4)
    assert got == pytest.approx(
        inception_score.inception_score(x * 2.0, splits=4, from_logits=True), rel=1e-10
    )
    acc = inception_score.InceptionScoreAccumulator(10, 6, splits=2, from_logits=True)
    acc.update(x[:5])
    with pytest.raises(ValueError, match="fed 5 of"):
        acc.result()
    with pytest.raises(ValueError, match="more rows"):
        acc.update(x[:6])


# ----------------------------------------------------------------------------------------- FID
def test_fid_self_is_zero_and_diagonal_closed_form():
    rng = np.random.default_rng(4)
    feats = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    mu, sigma = np.mean(feats, 0), np.cov(feats, rowvar=False)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    d = 32
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    want = np.sum((m1 - m2) ** 2) + np.sum(
        v1 + v2 - 2 * np.sqrt(v1 * v2)
    )  # diagonal: sqrt is elementwise
    assert fid.frechet_distance(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(want, rel=1e-10)


def test_fid_of_sample_stats_matches_closed_form():
    rng = np.random.default_rng(5)
    d, n = 8, 4000
    a = rng.normal(size=(d, d))
    s1 = a @ a.T / d + np.eye(d)
    s2 = np.diag(rng.uniform(0.5, 2, d))
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    x = rng.multivariate_normal(m1, s1, size=n)
    y = rng.multivariate_normal(m2, s2, size=n)
    st1, st2 = fid.FeatureStats(d), fid.FeatureStats(d)
    st1.update(x)
    st2.update(y)
    got = fid.frechet_distance(*st1.mean_cov(), *st2.mean_cov())
    r2 = linalg.sqrtm(s2)  # tr sqrt(S1 S2) = tr sqrt(S2^1/2 S1 S2^1/2) (symmetric PSD form)
    want = (
        np.sum((m1 - m2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(linalg.sqrtm(r2 @ s1 @ r2).real)
    )
    assert got == pytest.approx(want, abs=0.15)  # sampling error at n = 4000


def test_fid_singular_fallback_and_shape_errors():
    sigma = np.diag([1.0, 0.0, 0.0])  # singular product
    assert fid.frechet_distance(np.zeros(3), sigma, np.ones(3), sigma) == pytest.approx(
        3.0, abs=1e-3
    )
    with pytest.raises(ValueError, match="lengths"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_streaming_stats_equal_numpy_and_memory_is_constant():
    rng = np.random.default_rng(6)
    feats = rng.normal(size=(1000, 24)) * 0.3 + 50.0  # large mean: the shift keeps precision
    st = fid.FeatureStats(24)
    nbytes = st.nbytes
    for i in range(0, 1000, 64):
        st.update(feats[i : i + 64])
        assert st.nbytes == nbytes == (2 * 24 + 24 * 24) * 8
    mu, sigma = st.mean_cov()
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-13)
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-9, atol=1e-13)
    a, b = fid.FeatureStats(24), fid.FeatureStats(24)
    a.update(feats[:300])
    b.update(feats[300:] + 0)  # different shift
    a.merge(b)
    np.testing.assert_allclose(a.mean_cov()[1], sigma, rtol=1e-9, atol=1e-13)
    stats = fid.stats_from_batches(
        lambda z: z[:, :24], (feats[i : i + 100] for i in range(0, 1000, 100)), dim=24
    )
    np.testing.assert_allclose(stats.mean_cov()[0], mu, rtol=1e-13)


def test_reference_stats_npz_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(7)
    st = fid.FeatureStats(5)
    st.update(rng.normal(size=(50, 5)))
    path = str(tmp_path / "sub" / "bird_val.npz")
    st.save_npz(path)
    assert sorted(os.listdir(tmp_path / "sub")) == ["bird_val.npz"]  # no temporary left behind
    mu, sigma = fid.load_reference_stats(path)
    np.testing.assert_allclose(sigma, st.mean_cov()[1])
    assert fid.fid_against_reference(st, path) == pytest.approx(0.0, abs=1e-8)
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, m=mu, s=sigma)
    with pytest.raises(KeyError, match=r"bad\.npz.*\['m', 's'\]"):
        fid.load_reference_stats(bad)
    np.savez(bad, mu=mu, sigma=sigma[:3])
    with pytest.raises(ValueError, match="not \\(D,\\) and \\(D, D\\)"):
        fid.load_reference_stats(bad)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        fid.load_reference_stats(str(tmp_path / "missing.npz"))


# --------------------------------------------------------------------------------- R-precision
def test_r_precision_perfect_and_random():
    rng = np.random.default_rng(8)
    n, d = 3000, 64
    sent = rng.normal(size=(n, d))
    mis = sent[r_precision.sample_mismatched_indices(None, 99, rng, n=n)]  # (N, 99, D)
    mean, std = r_precision.r_precision(sent * 2.0, sent, mis)  # cosine ignores scale
    assert mean == 1.0 and std == 0.0
    mean, _ = r_precision.r_precision(rng.normal(size=(n, d)), sent, mis)
    assert 0.003 < mean < 0.02  # chance is 1/100


def test_r_precision_folds_and_dmgan_quirk():
    hits = np.zeros(30000)
    hits[:15000] = 1
    mean, _ = r_precision.fold_statistics(hits)
    assert mean == 0.5
    mean_q, _ = r_precision.fold_statistics(hits, dmgan_fold_quirk=True)
    assert mean_q != 0.5 and abs(mean_q - 0.5) < 1e-3  # 2999 of every 3000 used


def test_mismatch_sampling_never_same_class():
    rng = np.random.default_rng(9)
    cls = rng.integers(0, 5, size=400)
    idx = r_precision.sample_mismatched_indices(cls, 99, rng)
    assert idx.shape == (400, 99)
    assert not np.any(cls[idx] == cls[:, None])
    assert len(np.unique(idx)) > 350  # spread over the pool
    idx = r_precision.sample_mismatched_indices(None, 99, rng, n=50)
    assert not np.any(idx == np.arange(50)[:, None])
    with pytest.raises(ValueError, match="one class"):
        r_precision.sample_mismatched_indices(np.zeros(10), 99, rng)


# ------------------------------------------------------------- a TF checkpoint writer (test only)
def _uv(x: int) -> bytes:
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        out.append(b | (0x80 if x else 0))
        if not x:
            return bytes(out)


def _f(num: int, value) -> bytes:
    """One protobuf field: int -> varint, bytes -> length-delimited."""
    if isinstance(value, int):
        return _uv(num << 3) + _uv(value)
    return _uv(num << 3 | 2) + _uv(len(value)) + value


def _shape_proto(shape) -> bytes:
    return b"".join(_f(2, _f(1, d)) for d in shape)


def _block(entries, restart_interval=2) -> bytes:
    buf, restarts, prev = bytearray(), [], b""
    for i, (k, v) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(buf))
        else:
            while shared < min(len(k), len(prev)) and k[shared] == prev[shared]:
                shared += 1
        buf += _uv(shared) + _uv(len(k) - shared) + _uv(len(v)) + k[shared:] + v
        prev = k
    return (
        bytes(buf)
        + b"".join(struct.pack("<I", r) for r in restarts)
        + struct.pack("<I", len(restarts))
    )


def write_sstable(path, entries, per_block=3, compression=0):
    """LevelDB table: data blocks of ``per_block`` entries, index, empty metaindex, footer."""
    out, index = bytearray(), []
    for i in range(0, len(entries), per_block):
        chunk = entries[i : i + per_block]
        blk = _block(chunk)
        index.append((chunk[-1][0], _uv(len(out)) + _uv(len(blk))))
        out += blk + bytes([compression]) + b"\0\0\0\0"  # CRC not checked by the reader
    meta_h = _uv(len(out)) + _uv(len(_block([])))
    out += _block([]) + b"\0" * 5
    index_blk = _block(index, restart_interval=1)
    index_h = _uv(len(out)) + _uv(len(index_blk))
    out += index_blk + b"\0" * 5
    out += (meta_h + index_h).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    with open(path, "wb") as fh:
        fh.write(out)


_ENUM = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9}


def write_v2(prefix, tensors):
    data, entries = (
        bytearray(),
        [(b"", _f(1, 1) + _f(3, _f(1, 1)))],
    )  # header: num_shards 1, version
    for name in sorted(tensors):
        a = np.asarray(tensors[name], order="C")
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        e = (
            _f(1, _ENUM[a.dtype])
            + _f(2, _shape_proto(a.shape))
            + _f(4, len(data))
            + _f(5, len(raw))
        )
        entries.append((name.encode(), e))
        data += raw
    write_sstable(prefix + ".index", entries)
    with open(prefix + ".data-00000-of-00001", "wb") as fh:
        fh.write(data)


def write_v1(path, tensors, split_first_dim=()):
    from tensorboardX.proto import tensor_pb2

    meta, data = b"", []
    for name in sorted(tensors):
        a = tensors[name]
        full = b"".join(_f(1, b"") for _ in a.shape)  # one empty extent per dim = full slice
        meta += _f(
            1,
            _f(1, name.encode())
            + _f(2, _shape_proto(a.shape))
            + _f(3, _ENUM[a.dtype])
            + _f(4, full),
        )
        parts = (
            [(0, a.shape[0] // 2), (a.shape[0] // 2, a.shape[0] - a.shape[0] // 2)]
            if name in split_first_dim
            else [None]
        )
        for part in parts:
            ext, sub = full, a
            if part is not None:
                ext = _f(1, _f(1, part[0]) + _f(2, part[1])) + full[2:]
                sub = a[part[0] : part[0] + part[1]]
            tp = tensor_pb2.TensorProto(dtype=_ENUM[a.dtype])
            getattr(
                tp, {1: "float_val", 9: "int64_val", 3: "int_val", 2: "double_val"}[_ENUM[a.dtype]]
            ).extend(sub.ravel().tolist())
            saved = _f(1, name.encode()) + _f(2, ext) + _f(3, tp.SerializeToString())
            data.append((b"\x00" + name.encode() + bytes([len(data)]), _f(2, saved)))
    write_sstable(path, [(b"", _f(1, meta))] + sorted(data))


def _small_tensors(rng):
    return {
        "conv0/weights": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
        "conv0/BatchNorm/beta": rng.normal(size=4).astype(np.float32),
        "conv0/BatchNorm/moving_mean": rng.normal(size=4).astype(np.float32),
        "conv0/BatchNorm/moving_mean/ExponentialMovingAverage": rng.normal(size=4).astype(
            np.float32
        ),
        "global_step": np.array(5000, np.int64),
        "steps": np.array([-3, 7, 2**40], np.int64),
        "logits/logits/weights": rng.normal(size=(8, 51)).astype(np.float32),
        "d": rng.normal(size=(2, 3)),
    }


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tf_checkpoint_round_trip(tmp_path, version):
    tensors = _small_tensors(np.random.default_rng(10))
    prefix = str(tmp_path / "model.ckpt-5000")
    if version == "v2":
        write_v2(prefix, tensors)
    else:
        write_v1(prefix, tensors, split_first_dim=("logits/logits/weights",))
    got = tf_checkpoint.read_tf_checkpoint(prefix)
    assert sorted(got) == sorted(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_tf_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        tf_checkpoint.read_tf_checkpoint(str(tmp_path / "nothing"))
    p = tmp_path / "junk"
    p.write_bytes(b"x" * 100)
    with pytest.raises(tf_checkpoint.CheckpointFormatError, match="magic"):
        tf_checkpoint.read_tf_checkpoint(str(p))
    write_sstable(str(tmp_path / "s.index"), [(b"", b"")], compression=1)
    with pytest.raises(tf_checkpoint.CheckpointFormatError, match="snappy"):
        tf_checkpoint.read_tf_checkpoint(str(tmp_path / "s"))


# ------------------------------------------------------------------- StackGAN Inception mapping
def _old_slim_shapes():
    """TF (kh, kw, in, out) of every conv, written from old slim's inception_model.py."""
    s = {
        "conv0": (3, 3, 3, 32),
        "conv1": (3, 3, 32, 32),
        "conv2": (3, 3, 32, 64),
        "conv3": (1, 1, 64, 80),
    }
    s["conv4"] = (3, 3, 80, 192)
    for blk, cin, pool in (
        ("mixed_35x35x256a", 192, 32),
        ("mixed_35x35x288a", 256, 64),
        ("mixed_35x35x288b", 288, 64),
    ):
        s.update(
            {f"{blk}/branch1x1/Conv": (1, 1, cin, 64), f"{blk}/branch5x5/Conv": (1, 1, cin, 48)}
        )
        s.update(
            {f"{blk}/branch5x5/Conv_1": (5, 5, 48, 64), f"{blk}/branch3x3dbl/Conv": (1, 1, cin, 64)}
        )
        s.update(
            {
                f"{blk}/branch3x3dbl/Conv_1": (3, 3, 64, 96),
                f"{blk}/branch3x3dbl/Conv_2": (3, 3, 96, 96),
            }
        )
        s[f"{blk}/branch_pool/Conv"] = (1, 1, cin, pool)
    b = "mixed_17x17x768a"
    s.update({f"{b}/branch3x3/Conv": (3, 3, 288, 384), f"{b}/branch3x3dbl/Conv": (1, 1, 288, 64)})
    s.update(
        {f"{b}/branch3x3dbl/Conv_1": (3, 3, 64, 96), f"{b}/branch3x3dbl/Conv_2": (3, 3, 96, 96)}
    )
    for sfx, c in zip("bcde", (128, 160, 160, 192), strict=True):
        b = f"mixed_17x17x768{sfx}"
        s.update({f"{b}/branch1x1/Conv": (1, 1, 768, 192), f"{b}/branch7x7/Conv": (1, 1, 768, c)})
        s.update({f"{b}/branch7x7/Conv_1": (1, 7, c, c), f"{b}/branch7x7/Conv_2": (7, 1, c, 192)})
        s.update(
            {f"{b}/branch7x7dbl/Conv": (1, 1, 768, c), f"{b}/branch7x7dbl/Conv_1": (7, 1, c, c)}
        )
        s.update(
            {f"{b}/branch7x7dbl/Conv_2": (1, 7, c, c), f"{b}/branch7x7dbl/Conv_3": (7, 1, c, c)}
        )
        s.update(
            {f"{b}/branch7x7dbl/Conv_4": (1, 7, c, 192), f"{b}/branch_pool/Conv": (1, 1, 768, 192)}
        )
    b = "mixed_17x17x1280a"
    s.update({f"{b}/branch3x3/Conv": (1, 1, 768, 192), f"{b}/branch3x3/Conv_1": (3, 3, 192, 320)})
    s.update(
        {f"{b}/branch7x7x3/Conv": (1, 1, 768, 192), f"{b}/branch7x7x3/Conv_1": (1, 7, 192, 192)}
    )
    s.update(
        {f"{b}/branch7x7x3/Conv_2": (7, 1, 192, 192), f"{b}/branch7x7x3/Conv_3": (3, 3, 192, 192)}
    )
    for b, cin in (("mixed_8x8x2048a", 1280), ("mixed_8x8x2048b", 2048)):
        s.update({f"{b}/branch1x1/Conv": (1, 1, cin, 320), f"{b}/branch3x3/Conv": (1, 1, cin, 384)})
        s.update(
            {f"{b}/branch3x3/Conv_1": (1, 3, 384, 384), f"{b}/branch3x3/Conv_2": (3, 1, 384, 384)}
        )
        s.update(
            {
                f"{b}/branch3x3dbl/Conv": (1, 1, cin, 448),
                f"{b}/branch3x3dbl/Conv_1": (3, 3, 448, 384),
            }
        )
        s.update(
            {
                f"{b}/branch3x3dbl/Conv_2": (1, 3, 384, 384),
                f"{b}/branch3x3dbl/Conv_3": (3, 1, 384, 384),
            }
        )
        s[f"{b}/branch_pool/Conv"] = (1, 1, cin, 192)
    return s


# torchvision Inception3 conv weights (O, I, kh, kw): a sample, from torchvision's inception.py
_TORCHVISION = {
    "Conv2d_1a_3x3": (32, 3, 3, 3),
    "Conv2d_4a_3x3": (192, 80, 3, 3),
    "Mixed_5b.branch5x5_2": (64, 48, 5, 5),
    "Mixed_5c.branch_pool": (64, 256, 1, 1),
    "Mixed_6a.branch3x3": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2": (128, 128, 1, 7),
    "Mixed_6b.branch7x7_3": (192, 128, 7, 1),
    "Mixed_6c.branch7x7dbl_2": (160, 160, 7, 1),
    "Mixed_6e.branch7x7dbl_5": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2": (320, 192, 3, 3),
    "Mixed_7a.branch7x7x3_2": (192, 192, 1, 7),
    "Mixed_7b.branch3x3_2a": (384, 384, 1, 3),
    "Mixed_7b.branch3x3_2b": (384, 384, 3, 1),
    "Mixed_7c.branch3x3dbl_1": (448, 2048, 1, 1),
    "Mixed_7c.branch3x3dbl_3b": (384, 384, 3, 1),
    "Mixed_7c.branch_pool": (192, 2048, 1, 1),
}


def test_stackgan_inception_mapping_full_shapes():
    rng = np.random.default_rng(11)
    ema = "/ExponentialMovingAverage"
    shapes = _old_slim_shapes()
    assert len(shapes) == 94
    v = {"global_step": np.array(5000), "aux_logits/FC/weights": np.zeros((768, 51), np.float32)}
    for scope, shp in shapes.items():
        v[f"{scope}/weights{ema}"] = rng.normal(size=shp).astype(np.float32)
        for bn in ("beta", "moving_mean", "moving_variance"):
            v[f"{scope}/BatchNorm/{bn}{ema}"] = rng.normal(size=shp[-1]).astype(np.float32)
        v[f"{scope}/BatchNorm/beta"] = np.full(
            shp[-1], 99.0, np.float32
        )  # raw value: must not be used
    v[f"logits/logits/weights{ema}"] = rng.normal(size=(2048, 51)).astype(np.float32)
    v[f"logits/logits/biases{ema}"] = rng.normal(size=51).astype(np.float32)
    sd = stackgan_inception.stackgan_inception_state_dict(v)
    assert len(sd) == 94 * 5 + 2
    for key, shp in _TORCHVISION.items():
        assert sd[f"{key}.conv.weight"].shape == shp, key
    np.testing.assert_array_equal(sd["fc.weight"], v[f"logits/logits/weights{ema}"].T)
    w = v[f"mixed_8x8x2048b/branch3x3dbl/Conv_3/weights{ema}"]
    np.testing.assert_array_equal(
        sd["Mixed_7c.branch3x3dbl_3b.conv.weight"], w.transpose(3, 2, 0, 1)
    )
    b = "mixed_17x17x768d/branch7x7dbl/Conv_2/BatchNorm"
    np.testing.assert_array_equal(sd["Mixed_6d.branch7x7dbl_3.bn.bias"], v[f"{b}/beta{ema}"])
    np.testing.assert_array_equal(
        sd["Mixed_6d.branch7x7dbl_3.bn.running_var"], v[f"{b}/moving_variance{ema}"]
    )
    np.testing.assert_array_equal(
        sd["Mixed_6d.branch7x7dbl_3.bn.weight"], np.ones(160, np.float32)
    )  # scale=False
    with pytest.raises(
        KeyError, match="mixed_35x35x256a/branch_pool/Conv/weights.*Mixed_5b.branch_pool"
    ):
        del v[f"mixed_35x35x256a/branch_pool/Conv/weights{ema}"]
        stackgan_inception.stackgan_inception_state_dict(v)


def test_stackgan_inception_new_slim_names_and_ema_fallback():
    torch_names = [
        (tb, tc) for _, tb, convs in stackgan_inception.NEW_SLIM_BLOCKS for _, tc in convs
    ]
    old_names = [(tb, tc) for _, tb, convs in stackgan_inception.OLD_SLIM_BLOCKS for _, tc in convs]
    assert torch_names == old_names  # both schemes cover the same 94 torchvision convs, in order
    new = [
        f"{b}/{c}".rstrip("/")
        for b, _, convs in stackgan_inception.NEW_SLIM_BLOCKS
        for c, _ in convs
    ]
    assert "Mixed_5c/Branch_1/Conv_1_0c_5x5" in new and "Mixed_7c/Branch_1/Conv2d_0c_3x1" in new
    v = {}
    for scope in new:
        v[f"InceptionV3/{scope}/weights"] = np.zeros((1, 1, 2, 3), np.float32)
        for bn in ("beta", "moving_mean", "moving_variance"):
            v[f"InceptionV3/{scope}/BatchNorm/{bn}"] = np.zeros(3, np.float32)
    v["InceptionV3/Logits/Conv2d_1c_1x1/weights"] = np.zeros((1, 1, 2048, 51), np.float32)
    v["InceptionV3/Logits/Conv2d_1c_1x1/biases"] = np.zeros(51, np.float32)
    with pytest.warns(UserWarning, match="ExponentialMovingAverage"):
        sd = stackgan_inception.stackgan_inception_state_dict(v, ema=True)
    assert sd["fc.weight"].shape == (51, 2048) and len(sd) == 94 * 5 + 2
