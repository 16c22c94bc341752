"""Read TensorFlow-1 checkpoints (V1 and V2) into numpy, without TensorFlow.

No maintained pure-Python reader exists on PyPI (the usual answer is ``tf.train.load_checkpoint``),
so this module decodes the two on-disk formats directly. Both are built on TensorFlow's copy of
the LevelDB *SSTable* ("table") format (``tensorflow/core/lib/io/format.h``):

* the file ends in a 48-byte footer: two ``BlockHandle``s (varint64 offset, varint64 size) for the
  metaindex and index blocks, zero padding to 40 bytes, and the fixed64 magic
  ``0xdb4775248b80fb57``;
* each block is followed by a 5-byte trailer: a compression byte (0 = none, 1 = snappy) and a
  masked CRC32C (not verified here);
* block contents are entries ``varint32 shared, varint32 non_shared, varint32 value_len,
  key[shared:], value`` (keys are prefix-compressed against the previous key), then a uint32
  restart array and its uint32 length;
* the index block maps a separator key to the ``BlockHandle`` of each data block.

**V2** (``model.ckpt-N.index`` + ``model.ckpt-N.data-00000-of-00001``, TF >= 0.12,
``tensor_bundle.proto``): the index table maps ``""`` to a ``BundleHeaderProto`` (num_shards = 1,
endianness = 2) and every tensor name to a ``BundleEntryProto`` (dtype = 1, shape = 2, shard_id = 3,
offset = 4, size = 5); the tensor is ``size`` raw little-endian bytes at ``offset`` of data shard
``shard_id``.

**V1** (a single file ``model.ckpt``, ``saved_tensor_slice.proto``; this is what the StackGAN
``inception_finetuned_models.zip`` ships: ``model.ckpt`` + ``model.ckpt.meta``): the table maps
``""`` to ``SavedTensorSlices{meta: SavedTensorSliceMeta{tensor: [SavedSliceMeta{name = 1,
shape = 2, type = 3}]}}`` and one ordered-code key per slice to ``SavedTensorSlices{data:
SavedSlice{name = 1, slice = 2, data = 3 (TensorProto)}}``. Values are in the TensorProto's
``tensor_content`` or in its typed repeated fields (``float_val`` = 5, ...). Slices (partitioned
variables) are assembled.

Both TensorFlow writers disable compression for these tables; a snappy block raises a clear error.
String tensors are skipped (no model weight is a string).
"""

from __future__ import annotations

import os
import struct

import numpy as np

from attngan_jax.errors import InputError, MissingInputError

_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
# TensorFlow DataType enum (types.proto) -> numpy dtype (little endian).
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("bool"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_DT_STRING = 7
# TensorProto typed value fields: field number -> (dtype the values are stored as, wire type).
_TYPED_FIELDS = {
    5: ("<f4", 5),
    6: ("<f8", 1),
    7: ("varint", 0),
    10: ("varint", 0),
    11: ("varint", 0),
}
_TYPED_FIELDS.update({13: ("varint", 0), 16: ("varint", 0), 17: ("varint", 0)})


class CheckpointFormatError(InputError):
    """The file is not a checkpoint this reader understands."""


# ------------------------------------------------------- protobuf wire format (hand-decoded)
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Decodes one protobuf message into ``[(field_number, wire_type, value), ...]``."""
    out, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        num, wt = tag >> 3, tag & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos : pos + n], pos + n
        elif wt == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wt} (field {num})")
        out.append((num, wt, val))
    return out


def _first(fields, num: int, default=None):
    return next((v for n, _, v in fields if n == num), default)


def _shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}."""
    return tuple(_first(_fields(d), 1, 0) for n, _, d in _fields(buf) if n == 2)


def _extents(buf: bytes) -> list[tuple[int, int | None]]:
    """TensorSliceProto: repeated Extent extent = 1 {start = 1; length = 2} (no length = full)."""
    return [
        (_first(f, 1, 0), _first(f, 2)) for f in (_fields(e) for n, _, e in _fields(buf) if n == 1)
    ]


# ---------------------------------------------------------------- SSTable
def _block(data: bytes, offset: int, size: int, source: str) -> bytes:
    if offset + size + 5 > len(data):
        raise CheckpointFormatError(
            f"{source}: block [{offset}, +{size}) runs past the end of the file"
        )
    ctype = data[offset + size]
    if ctype == 1:
        raise CheckpointFormatError(
            f"{source}: snappy-compressed table block; TensorFlow checkpoints are written "
            "uncompressed, "
            "so this is probably not a checkpoint index (snappy is not supported)"
        )
    if ctype != 0:
        raise CheckpointFormatError(f"{source}: unknown block compression type {ctype}")
    return data[offset : offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Entries of one block: prefix-compressed keys, restart array at the end (ignored)."""
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    entries, key, pos = [], b"", 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def read_sstable(path: str) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` pairs of a TensorFlow/LevelDB table file, in file order.

    Args:
        path: the table file.

    Returns:
        list of (key bytes, value bytes).
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _FOOTER_LEN or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise CheckpointFormatError(f"{path}: not a TensorFlow table file (bad footer magic)")
    footer = data[len(data) - _FOOTER_LEN :]
    _, pos = _varint(footer, 0)  # metaindex offset (the metaindex block is unused)
    _, pos = _varint(footer, pos)
    index_off, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    out = []
    for _, handle in _block_entries(_block(data, index_off, index_size, path)):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        out.extend(_block_entries(_block(data, off, size, path)))
    return out


# ---------------------------------------------------------------- V2 bundle
def _read_v2(prefix: str) -> dict[str, np.ndarray]:
    entries = read_sstable(prefix + ".index")
    if not entries or entries[0][0] != b"":
        raise CheckpointFormatError(f"{prefix}.index: missing the BundleHeaderProto entry")
    header = _fields(entries[0][1])
    num_shards = _first(header, 1, 1)
    if _first(header, 2, 0) == 1:
        raise CheckpointFormatError(f"{prefix}.index: big-endian checkpoints are not supported")
    shards: dict[int, object] = {}
    out: dict[str, np.ndarray] = {}
    try:
        for key, value in entries[1:]:
            name, f = key.decode("utf-8"), _fields(value)
            if any(n == 7 for n, _, _ in f):
                raise CheckpointFormatError(
                    f"{prefix}: tensor '{name}' is partitioned (slices); not supported"
                )
            dtype_enum, shape = _first(f, 1, 0), _shape(_first(f, 2, b""))
            shard, offset, size = _first(f, 3, 0), _first(f, 4, 0), _first(f, 5, 0)
            if dtype_enum == _DT_STRING:
                continue
            if dtype_enum not in DTYPES:
                raise CheckpointFormatError(
                    f"{prefix}: tensor '{name}' has unsupported dtype enum {dtype_enum}"
                )
            if shard not in shards:
                shards[shard] = open(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}", "rb")  # noqa: SIM115
            fh = shards[shard]
            fh.seek(offset)
            raw = fh.read(size)
            dt = DTYPES[dtype_enum]
            if len(raw) != size or size != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
                raise CheckpointFormatError(
                    f"{prefix}: tensor '{name}' {shape} {dt}: expected "
                    f"{dt.itemsize * int(np.prod(shape))} bytes at offset {offset}, "
                    f"read {len(raw)} (size {size})"
                )
            out[name] = np.frombuffer(raw, dt).reshape(shape).copy()
    finally:
        for fh in shards.values():
            fh.close()
    return out


# ---------------------------------------------------------------- V1 tensor slices
def _tensor_proto_values(buf: bytes, dt: np.dtype, count: int, where: str) -> np.ndarray:
    f = _fields(buf)
    content = _first(f, 4)
    if content:
        return np.frombuffer(content, dt)[:count]
    vals: list = []
    for num, wt, v in f:
        if num not in _TYPED_FIELDS:
            continue
        kind, single_wt = _TYPED_FIELDS[num]
        if kind == "varint":
            if wt == 2:  # packed
                p = 0
                while p < len(v):
                    x, p = _varint(v, p)
                    vals.append(x)
            else:
                vals.append(v)
        else:  # fixed-width floats, packed (wt 2) or not (wt == single_wt)
            vals.extend(np.frombuffer(v, kind).tolist())
    if np.issubdtype(dt, np.signedinteger):  # negative varints are 64-bit two's complement
        arr = np.asarray([x - (1 << 64) if x >= 1 << 63 else x for x in vals], np.int64)
    elif dt == np.float16:  # half_val holds the bit patterns
        arr = np.asarray(vals, np.uint16).view(np.float16)
    else:
        arr = np.asarray(vals)
    if arr.size == 1 and count > 1:  # TF stores a constant-filled tensor as one value
        arr = np.full(count, arr[0])
    if arr.size != count:
        raise CheckpointFormatError(f"{where}: expected {count} values, found {arr.size}")
    return arr.astype(dt)


def _read_v1(path: str) -> dict[str, np.ndarray]:
    entries = read_sstable(path)
    if not entries or entries[0][0] != b"":
        raise CheckpointFormatError(f"{path}: missing the SavedTensorSliceMeta entry")
    meta = _fields(_first(_fields(entries[0][1]), 1, b""))
    specs: dict[str, tuple[tuple[int, ...], int]] = {}
    for n, _, t in meta:
        if n == 1:
            tf_ = _fields(t)
            specs[_first(tf_, 1, b"").decode("utf-8")] = (
                _shape(_first(tf_, 2, b"")),
                _first(tf_, 3, 0),
            )
    out: dict[str, np.ndarray] = {}
    for _, value in entries[1:]:
        saved = _first(_fields(value), 2)
        if saved is None:
            continue
        sf = _fields(saved)
        name = _first(sf, 1, b"").decode("utf-8")
        shape, dtype_enum = specs[name]
        if dtype_enum == _DT_STRING:
            continue
        if dtype_enum not in DTYPES:
            raise CheckpointFormatError(
                f"{path}: tensor '{name}' has unsupported dtype enum {dtype_enum}"
            )
        extents = _extents(_first(sf, 2, b""))
        index = tuple(
            slice(0, dim) if length is None else slice(start, start + length)
            for (start, length), dim in zip(extents, shape, strict=False)
        )
        sub_shape = tuple(s.stop - s.start for s in index) + shape[len(index) :]
        vals = _tensor_proto_values(
            _first(sf, 3, b""), DTYPES[dtype_enum], int(np.prod(sub_shape)), name
        )
        if name not in out:
            out[name] = np.zeros(shape, DTYPES[dtype_enum])
        out[name][index] = vals.reshape(sub_shape)
    return out


def read_tf_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """Reads every (non-string) variable of a TF1 checkpoint.

    Args:
        prefix: the checkpoint prefix as given to ``tf.train.Saver.restore``, e.g.
            ``.../birds_valid299/model.ckpt-5000``. V2 when ``prefix + ".index"`` exists, else V1
            (``prefix`` is the single table file).

    Returns:
        dict from the TF variable name (e.g. ``conv0/weights/ExponentialMovingAverage``) to a numpy
        array in TF layout (conv kernels (kh, kw, in, out), dense kernels (in, out)).

    Raises:
        FileNotFoundError: neither format's files exist.
        CheckpointFormatError: the file is damaged or uses a feature this reader lacks.
    """
    try:
        if os.path.exists(prefix + ".index"):
            return _read_v2(prefix)
        if os.path.isfile(prefix):
            return _read_v1(prefix)
    except CheckpointFormatError:
        raise
    except FileNotFoundError as e:  # a V2 data shard
        raise MissingInputError(
            f"{prefix}: the checkpoint's data file {e.filename} is missing; copy every "
            f"{os.path.basename(prefix)}.* file"
        ) from None
    except (struct.error, IndexError, KeyError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointFormatError(
            f"{prefix}: damaged or truncated TensorFlow checkpoint ({type(e).__name__}: {e}); "
            "download or copy it again"
        ) from None
    raise MissingInputError(
        f"no TensorFlow checkpoint at '{prefix}': expected '{prefix}.index' + "
        f"'{prefix}.data-*' (V2) "
        f"or the single file '{prefix}' (V1)"
    )
