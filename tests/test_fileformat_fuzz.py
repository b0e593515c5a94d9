"""Property tests of the file reader: random damage to valid checkpoints ends in a CheckpointError, in bounded memory.

Each example starts from the bytes of a real training checkpoint (tensors of several dtypes,
0-d and empty ones included, nested metadata) and damages it: the header's length field, the
header's tensor entries (shapes, offsets, dtypes, names), its metadata (format, version,
checksum, the meta JSON and how deeply it nests), or raw bytes (flips, cuts, insertions).
:func:`portnn.fileformat._decode`, the reader of :func:`portnn.fileformat.read_file` on bytes
in memory, must then either return the file (a harmless change, such as the header's spacing)
or raise a :class:`~portnn.fileformat.CheckpointError`: never another exception, and never an
allocation the bytes do not pay for (measured with tracemalloc: NumPy reports its arrays there).
A header that declares terabytes costs what its bytes cost. Time is not asserted (the machines
are shared), but the memory bound leaves no room for work in proportion to a declared size.

Derandomized and without a database, as ``tests/test_properties.py``;
``PORTNN_PROPERTY_SCALE=10`` tries ten times as many examples.
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portnn as pn
from portnn import fileformat
from portnn.fileformat import CheckpointError

_SCALE = max(1, int(os.environ.get("PORTNN_PROPERTY_SCALE", "1")))
SETTINGS = settings(
    max_examples=150 * _SCALE,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _checkpoint(tmp: Path) -> bytes:
    """The bytes of a real training checkpoint: float32 weights, an int64 0-d counter, uint8 generator states."""
    x = np.random.default_rng(0).normal(size=(24, 3)).astype(np.float32)
    with pn.use_backend("numpy"):
        model = pn.Sequential(
            [pn.layers.Linear(3, 4), pn.layers.BatchNorm1d(4), pn.layers.Dropout(0.2), pn.layers.Linear(4, 2)], seed=0
        )
        model.fit(x, np.arange(24) % 2, loss=pn.losses.CrossEntropy(), optimizer=pn.optim.Adam(lr=0.01), epochs=1,
                  batch_size=8, verbose=0, checkpoint=tmp, record=True)  # fmt: skip
    return (tmp / "checkpoint.safetensors").read_bytes()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    data = _checkpoint(tmp_path_factory.mktemp("fuzz"))
    fileformat._decode(data, "good")  # the starting point reads
    return data


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _decodes_or_refuses(data: bytes) -> None:
    """The property: a CheckpointError or a good read, and a peak allocation the bytes pay for."""
    limit = 64 * len(data) + 2**20  # Python objects of a parsed header cost tens of times its text
    tracemalloc.start()
    try:
        try:
            tensors, meta = fileformat._decode(data, "fuzzed")
        except CheckpointError:
            pass
        else:  # what comes back is whole: arrays of the declared shapes, JSON metadata
            assert isinstance(meta, dict) and all(isinstance(a, np.ndarray) for a in tensors.values())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= limit, f"{peak} bytes allocated to read {len(data)}"


# -- strategies: what damage looks like ----------------------------------------------------
SIZES = st.one_of(
    st.integers(0, 64),
    st.sampled_from([2**31, 2**32 + 1, 2**40, 2**62, 2**63, 2**64, 10**30]),
    st.integers(-(2**63), -1),
    st.sampled_from([True, False, None, 1.5, "8", [], {}]),
)
DTYPES = st.sampled_from(["F32", "F64", "F16", "I64", "I32", "U8", "BOOL", "BF16", "F8_E4M3", "f32", "", "<f4", "object"])


@st.composite
def header_damage(draw: st.DrawFn, good: bytes) -> bytes:
    """One or a few changes to the tensor entries of the header, written back with a correct length field."""
    header, body = _split(good)

    def whole(entry: Any) -> bool:  # an entry an earlier change left intact
        return isinstance(entry, dict) and isinstance(entry.get("shape"), list) and len(entry.get("data_offsets", ())) == 2

    for _ in range(draw(st.integers(1, 3))):
        names = sorted(k for k, v in header.items() if k != "__metadata__" and whole(v))
        if not names:
            break
        name = draw(st.sampled_from(names))
        entry = header[name]
        kind = draw(st.sampled_from(["shape", "dim", "offsets", "offset", "dtype", "drop", "junk", "entry", "swap"]))
        if kind == "shape":
            entry["shape"] = draw(st.lists(SIZES, max_size=70))
        elif kind == "dim" and entry["shape"]:
            entry["shape"][draw(st.integers(0, len(entry["shape"]) - 1))] = draw(SIZES)
        elif kind == "offsets":
            entry["data_offsets"] = draw(st.lists(SIZES, max_size=3))
        elif kind == "offset":
            entry["data_offsets"][draw(st.integers(0, 1))] = draw(SIZES)
        elif kind == "dtype":
            entry["dtype"] = draw(DTYPES)
        elif kind == "drop":
            del entry[draw(st.sampled_from(sorted(entry)))]
        elif kind == "junk":
            header[draw(st.text(max_size=8))] = {"dtype": draw(DTYPES), "shape": [draw(SIZES)], "data_offsets": [0, draw(SIZES)]}
        elif kind == "entry":
            header[name] = draw(st.sampled_from([None, 3, "x", [], [1, 2]]))
        elif kind == "swap":
            other = header[draw(st.sampled_from(names))]
            entry["data_offsets"], other["data_offsets"] = other["data_offsets"], entry["data_offsets"]
    return _join(header, body)


@st.composite
def metadata_damage(draw: st.DrawFn, good: bytes) -> bytes:
    """A change to portnn's metadata: format, version, checksum, the meta JSON and its nesting."""
    header, body = _split(good)
    metadata = header["__metadata__"]
    kind = draw(st.sampled_from(["format", "version", "checksum", "meta-text", "meta-nesting", "header-nesting", "value"]))
    if kind == "format":
        metadata["format"] = draw(st.sampled_from(["pt", "", "PORTNN", "portnn "]))
    elif kind == "version":
        metadata["format_version"] = draw(st.sampled_from(["0", "2", "-1", "1.0", "١", "99999999999999999999", ""]))
    elif kind == "checksum":
        metadata["checksum"] = draw(st.sampled_from(["", "sha256:", "sha256:" + "0" * 64, "md5:0"]))
    elif kind == "meta-text":
        metadata["meta"] = draw(st.text(max_size=40))
    elif kind == "meta-nesting":
        depth = draw(st.integers(1, 20_000))
        metadata["meta"] = '{"kind": ' + "[" * depth + "]" * depth + "}"
    elif kind == "header-nesting":
        depth = draw(st.integers(1, 20_000))
        raw = json.dumps(header).encode()
        raw = raw[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
        return struct.pack("<Q", len(raw)) + raw + body
    else:
        metadata[draw(st.sampled_from(["meta", "format", "checksum", "portnn_version"]))] = draw(
            st.sampled_from([None, 1, [], {"a": 1}, True])
        )
    return _join(header, body)


@st.composite
def length_damage(draw: st.DrawFn, good: bytes) -> bytes:
    """A header length field that lies: huge, zero, off by a few bytes either way."""
    (n,) = struct.unpack("<Q", good[:8])
    value = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(max(0, n - 16), n + 16)))
    return struct.pack("<Q", value) + good[8:]


@st.composite
def byte_damage(draw: st.DrawFn, good: bytes) -> bytes:
    """Raw damage anywhere: flipped bytes, a cut, bytes inserted or appended."""
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


# -- the properties ------------------------------------------------------------------------
@SETTINGS
@given(data=st.data())
def test_damaged_tensor_entries_are_refused_in_bounded_memory(good: bytes, data: st.DataObject) -> None:
    _decodes_or_refuses(data.draw(header_damage(good)))


@SETTINGS
@given(data=st.data())
def test_damaged_metadata_is_refused_in_bounded_memory(good: bytes, data: st.DataObject) -> None:
    _decodes_or_refuses(data.draw(metadata_damage(good)))


@SETTINGS
@given(data=st.data())
def test_a_lying_length_field_is_refused_in_bounded_memory(good: bytes, data: st.DataObject) -> None:
    _decodes_or_refuses(data.draw(length_damage(good)))


@SETTINGS
@given(data=st.data())
def test_raw_damage_is_refused_in_bounded_memory(good: bytes, data: st.DataObject) -> None:
    _decodes_or_refuses(data.draw(byte_damage(good)))


def test_a_header_that_declares_terabytes_costs_what_its_bytes_cost(good: bytes) -> None:
    """The example the properties generalise: a shape and offsets that agree with each other but not with the file."""
    header, body = _split(good)
    name = next(k for k in header if k != "__metadata__" and header[k]["dtype"] == "F32")
    begin = header[name]["data_offsets"][0]
    header[name]["shape"], header[name]["data_offsets"] = [2**20, 2**20], [begin, begin + 2**42]
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=f"the data of tensor .* overlaps|{name}"):
            fileformat._decode(_join(header, body), "terabytes")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
