"""Tests of portnn.datasets: IDX parsing, MNIST/Fashion-MNIST loading and download, CSV loading.

No network: downloads are served by an HTTP server on 127.0.0.1.  Tests that need the real
MNIST files read them from ``../shared/datasets/mnist`` (relative to the repository root) or
``$PORTNN_DATA_DIR`` and skip when neither holds them.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import shutil
import socket
import struct
import sys
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import portnn.datasets.mnist as mnist_mod
from portnn.datasets import DatasetError, default_cache_dir, load_csv, load_fashion_mnist, load_mnist, read_idx
from portnn.datasets._download import _progress_bar
from portnn.datasets._idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, check_labels

NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"


def _file_in(directory: Path, name: str) -> Path | None:
    for p in (directory / name, directory / (name + ".gz")):
        if p.is_file():
            return p
    return None


def _has_all(directory: Path) -> bool:
    return all(_file_in(directory, n) is not None for n in NAMES)


def _find_real_mnist() -> Path | None:
    candidates = []
    env = os.environ.get("PORTNN_DATA_DIR")
    if env:
        candidates += [Path(env) / "mnist", Path(env)]
    candidates.append(SHARED_MNIST)
    return next((d for d in candidates if d.is_dir() and _has_all(d)), None)


REAL_DIR = _find_real_mnist()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No user env/cache leaks in, and no test can reach the real mirrors by accident."""
    monkeypatch.delenv("PORTNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(mnist_mod, "MNIST_MIRRORS", [])
    monkeypatch.setattr(mnist_mod, "FASHION_MNIST_MIRRORS", [])


@pytest.fixture(scope="module")
def real_dir() -> Path:
    if REAL_DIR is None:
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}: set PORTNN_DATA_DIR")
    return REAL_DIR


@pytest.fixture(scope="module")
def real_mnist(real_dir):
    return load_mnist(real_dir, download=False)


@pytest.fixture(scope="module")
def real_gz(real_dir) -> dict[str, bytes]:
    """The four real files as .gz bytes (the local ones, or compressed here if stored raw)."""
    out = {}
    for n in NAMES:
        p = _file_in(real_dir, n)
        data = p.read_bytes()
        out[n] = data if p.name.endswith(".gz") else gzip.compress(data, compresslevel=1)
    return out


def _idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr)
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C}
    if magic is None:
        magic = (codes[arr.dtype] << 8) | arr.ndim
    header = struct.pack(f">I{arr.ndim}I", magic, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(scope="module")
def fake_structure_gz() -> dict[str, bytes]:
    """Structurally valid MNIST-sized IDX files of zeros (gz): pass parsing, fail MNIST checksums."""
    out = {}
    for n in NAMES:
        count = 60000 if n.startswith("train") else 10000
        arr = np.zeros((count, 28, 28) if "images" in n else (count,), np.uint8)
        out[n] = gzip.compress(_idx_bytes(arr), compresslevel=1)
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture
def server(tmp_path, request):
    """HTTP server on 127.0.0.1 (free port) serving tmp_path/www; records request paths."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()

    def stop():
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

    request.addfinalizer(stop)
    return SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_address[1]}/", requests=requests)


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []


def _copy_real(real_dir: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for n in NAMES:
        src = _file_in(real_dir, n)
        shutil.copyfile(src, dest / src.name)


def _assert_same(a, b) -> None:
    (xa, ya), (xta, yta) = a
    (xb, yb), (xtb, ytb) = b
    for u, v in ((xa, xb), (ya, yb), (xta, xtb), (yta, ytb)):
        assert np.array_equal(u, v)


# ----------------------------------------------------------------------------- real MNIST


def test_real_mnist_shapes_dtypes_ranges(real_mnist):
    (x_train, y_train), (x_test, y_test) = real_mnist
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8
        assert a.flags.writeable and a.flags.c_contiguous
    assert x_train.min() == 0 and x_train.max() == 255
    assert 30 < x_train.mean() < 37  # ~33.3 for MNIST
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    counts = np.bincount(y_train, minlength=10)
    assert counts.sum() == 60000 and (counts >= 5000).all() and (counts <= 7000).all(), counts
    test_counts = np.bincount(y_test, minlength=10)
    assert (test_counts >= 800).all() and (test_counts <= 1200).all(), test_counts
    assert y_train[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]  # the well-known first MNIST labels


def test_found_via_env_var(real_dir, real_mnist, monkeypatch):
    monkeypatch.setenv("PORTNN_DATA_DIR", str(real_dir))
    _assert_same(load_mnist(download=False), real_mnist)


def test_found_in_mnist_subfolder_with_mixed_raw_and_gz(real_dir, real_mnist, tmp_path):
    _copy_real(real_dir, tmp_path / "data" / "mnist")
    # one file uncompressed: any mix of raw and .gz is accepted
    gz = tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    if gz.exists():
        (gz.parent / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    _assert_same(load_mnist(tmp_path / "data", download=False), real_mnist)


def test_found_in_user_cache(real_dir, real_mnist, tmp_path):
    cache = default_cache_dir()
    assert cache == tmp_path / "xdg-cache" / "portnn"
    _copy_real(real_dir, cache / "mnist")
    _assert_same(load_mnist(download=False), real_mnist)


def test_mnist_dir_refused_as_fashion_mnist(real_dir):
    with pytest.raises(DatasetError, match="not Fashion-MNIST") as info:
        load_fashion_mnist(real_dir, download=False)
    assert "MNIST file" in str(info.value) and str(real_dir) in str(info.value)


def test_corrupt_local_file_fails_checksum(real_dir, tmp_path):
    _copy_real(real_dir, tmp_path)
    labels_gz = _file_in(tmp_path, "train-labels-idx1-ubyte")
    raw = bytearray(gzip.decompress(labels_gz.read_bytes()) if labels_gz.name.endswith(".gz") else labels_gz.read_bytes())
    raw[100] = (raw[100] + 1) % 10  # still a valid label: only the checksum can tell
    labels_gz.unlink()
    bad = tmp_path / "train-labels-idx1-ubyte"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert str(bad) in msg and "checksum mismatch" in msg
    assert "a25bea736e30d166cdddb491f175f624" in msg  # expected MD5
    assert "delete it" in msg and "data_dir" in msg


# ----------------------------------------------------------------------------- IDX parsing


def test_read_idx_roundtrip_raw_and_gz(tmp_path):
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(images))
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    for p in (tmp_path / "a", tmp_path / "a.gz"):
        out = read_idx(p, expected_magic=IDX_IMAGES_MAGIC)
        assert out.dtype == np.uint8 and np.array_equal(out, images) and out.flags.writeable
    wide = np.array([[-3, 1000], [7, -32768]], dtype=np.int16)
    (tmp_path / "w").write_bytes(_idx_bytes(wide))
    out = read_idx(tmp_path / "w")
    assert out.dtype == np.int16 and out.dtype.isnative and np.array_equal(out, wide)


def test_read_idx_truncated(tmp_path):
    p = tmp_path / "images"
    p.write_bytes(_idx_bytes(np.zeros((2, 3, 4), np.uint8))[:-4])
    with pytest.raises(DatasetError, match=r"truncated: header says 2x3x4 = 24 bytes, file has 20") as info:
        read_idx(p)
    assert str(p) in str(info.value)


def test_read_idx_truncated_header_and_trailing_bytes(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(struct.pack(">II", IDX_IMAGES_MAGIC, 5))
    with pytest.raises(DatasetError, match="truncated header"):
        read_idx(p)
    p.write_bytes(_idx_bytes(np.zeros(5, np.uint8)) + b"\0\0")
    with pytest.raises(DatasetError, match="2 unexpected trailing bytes"):
        read_idx(p)


def test_read_idx_wrong_magic(tmp_path):
    p = tmp_path / "labels"
    p.write_bytes(_idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DatasetError, match=r"wrong IDX magic number 0x00000801.*expected 0x00000803") as info:
        read_idx(p, expected_magic=IDX_IMAGES_MAGIC)
    assert str(p) in str(info.value)
    p.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(DatasetError, match=r"not an IDX file: bad magic number 0x504b0304"):
        read_idx(p)


def test_read_idx_empty_files(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    (tmp_path / "e.gz").write_bytes(gzip.compress(b""))
    for name in ("e", "e.gz"):
        with pytest.raises(DatasetError, match="empty file") as info:
            read_idx(tmp_path / name)
        assert name in str(info.value)


def test_read_idx_bad_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DatasetError, match="bad gzip") as info:
        read_idx(p)
    assert str(p) in str(info.value)
    good = gzip.compress(_idx_bytes(np.zeros((50, 28, 28), np.uint8)))
    p.write_bytes(good[: len(good) // 2])  # truncated gzip stream
    with pytest.raises(DatasetError, match="bad gzip.*corrupt or truncated"):
        read_idx(p)


def test_labels_out_of_range(tmp_path):
    p = tmp_path / "labels"
    p.write_bytes(_idx_bytes(np.array([0, 9, 3, 10, 2, 12], np.uint8)))
    labels = read_idx(p, expected_magic=IDX_LABELS_MAGIC)
    with pytest.raises(DatasetError, match=r"label 10 at index 3 is outside 0\.\.9 \(2 such labels\)") as info:
        check_labels(labels, str(p))
    assert str(p) in str(info.value)


def _write_fake_fashion(directory: Path, *, bad_label: bool = False) -> None:
    """Raw (uncompressed) zero-filled files of the right structure: Fashion-MNIST can only check structure."""
    directory.mkdir(parents=True, exist_ok=True)
    for n in NAMES:
        count = 60000 if n.startswith("train") else 10000
        arr = np.zeros((count, 28, 28) if "images" in n else (count,), np.uint8)
        if bad_label and n == "train-labels-idx1-ubyte":
            arr[1234] = 10
        (directory / n).write_bytes(_idx_bytes(arr))


def test_fashion_structure_only_and_loader_label_check(tmp_path):
    _write_fake_fashion(tmp_path / "fashion_mnist")
    (x, y), (xt, yt) = load_fashion_mnist(tmp_path, download=False)
    assert x.shape == (60000, 28, 28) and y.shape == (60000,) and xt.shape == (10000, 28, 28) and yt.shape == (10000,)
    assert x.dtype == y.dtype == np.uint8
    _write_fake_fashion(tmp_path / "fashion-mnist", bad_label=True)  # tried before fashion_mnist/
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: label 10 at index 1234"):
        load_fashion_mnist(tmp_path, download=False)


def test_loader_rejects_wrong_count(tmp_path):
    _write_fake_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(9999, np.uint8)))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte: holds 9999 labels, expected 10000"):
        load_fashion_mnist(tmp_path, download=False)


# ----------------------------------------------------------------------------- download


def test_download_real_files(real_mnist, real_gz, server, tmp_path, monkeypatch):
    for n, data in real_gz.items():
        (server.root / (n + ".gz")).write_bytes(data)
    monkeypatch.setattr(mnist_mod, "MNIST_MIRRORS", [server.url])
    target = tmp_path / "target"
    _assert_same(load_mnist(target, download=True), real_mnist)
    assert _files_under(target) == sorted(target / "mnist" / (n + ".gz") for n in NAMES)
    assert len(server.requests) == 4
    # a second call finds the downloaded files: no network
    _assert_same(load_mnist(target, download=True), real_mnist)
    assert len(server.requests) == 4


def test_download_next_mirror_on_failure(real_mnist, real_gz, server, tmp_path, monkeypatch):
    (server.root / "good").mkdir()
    for n, data in real_gz.items():
        (server.root / "good" / (n + ".gz")).write_bytes(data)
    refused = f"http://127.0.0.1:{_unused_port()}/"
    monkeypatch.setattr(mnist_mod, "MNIST_MIRRORS", [refused, server.url + "missing/", server.url + "good"])
    _assert_same(load_mnist(tmp_path / "target", download=True), real_mnist)
    assert "/missing/train-labels-idx1-ubyte.gz" in server.requests
    assert sum(p.startswith("/good/") for p in server.requests) == 4


@pytest.mark.parametrize("kind", ["checksum", "garbage"])
def test_download_corrupt_file_never_lands(kind, fake_structure_gz, server, tmp_path, monkeypatch):
    (server.root / "good").mkdir()
    for n, data in fake_structure_gz.items():
        if kind == "garbage":
            data = gzip.compress(os.urandom(1000))
        (server.root / (n + ".gz")).write_bytes(data)
    monkeypatch.setattr(mnist_mod, "MNIST_MIRRORS", [server.url + "missing/", server.url])
    target = tmp_path / "target"
    with pytest.raises(DatasetError) as info:
        load_mnist(target, download=True)
    msg = str(info.value)
    assert "-idx1-ubyte.gz" in msg or "-idx3-ubyte.gz" in msg  # names the file
    assert "HTTP 404" in msg  # the first mirror's error is listed too
    assert server.url in msg and "rejected" in msg
    assert ("checksum mismatch" in msg) if kind == "checksum" else ("not an IDX file" in msg)
    assert _files_under(target) == []  # nothing under the final name, no temp file left


def test_download_mnist_served_as_fashion_is_refused(real_gz, server, tmp_path, monkeypatch):
    for n, data in real_gz.items():
        (server.root / (n + ".gz")).write_bytes(data)
    monkeypatch.setattr(mnist_mod, "FASHION_MNIST_MIRRORS", [server.url])
    with pytest.raises(DatasetError, match="not Fashion-MNIST"):
        load_fashion_mnist(tmp_path / "target", download=True)
    assert _files_under(tmp_path / "target") == []


def test_download_offline_lists_dirs_and_fix(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_unused_port()}/"
    monkeypatch.setattr(mnist_mod, "MNIST_MIRRORS", [url])
    env_dir = tmp_path / "env-data"
    monkeypatch.setenv("PORTNN_DATA_DIR", str(env_dir))
    target = tmp_path / "target"
    with pytest.raises(DatasetError) as info:
        load_mnist(target, download=True)
    msg = str(info.value)
    for d in (target, target / "mnist", env_dir, env_dir / "mnist", default_cache_dir(), default_cache_dir() / "mnist"):
        assert f"{d} (" in msg, d
    assert url + "train-labels-idx1-ubyte.gz" in msg
    assert "PORTNN_DATA_DIR" in msg and "data_dir=" in msg
    assert "on the command line: portnn train --data-dir /path/to/dir" in msg  # the CLI's option, for its users
    assert not target.exists()  # the folders made for the download are removed again


def test_no_download_when_disabled(server, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_mod, "MNIST_MIRRORS", [server.url])

    def no_network(*args, **kwargs):
        raise AssertionError("network used although download=False")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "train-labels-idx1-ubyte.gz").write_bytes(b"x")
    with pytest.raises(DatasetError, match="download=False") as info:
        load_mnist(tmp_path / "partial", download=False)
    msg = str(info.value)
    assert f"{tmp_path / 'partial'} (data_dir): has 1 of the 4 files" in msg
    assert "does not exist" in msg and "PORTNN_DATA_DIR" in msg and "--data-dir" in msg
    assert server.requests == []


def test_default_cache_dir(monkeypatch, tmp_path):
    if sys.platform == "win32":
        monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
        assert default_cache_dir() == tmp_path / "portnn"
        return
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "portnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "portnn"


def test_no_progress_bar_when_not_a_tty(monkeypatch):
    import io

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert _progress_bar(100, "x") is None


# ----------------------------------------------------------------------------- CSV


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_csv_with_header_and_labels(tmp_path):
    p = _write(tmp_path / "train.csv", "label,p0,p1,p2,p3\n3,0,255,1,2\n7,4,5,6,7\n0,0,0,0,0\n")
    x, y = load_csv(p, image_shape=(2, 2))
    assert x.shape == (3, 2, 2) and x.dtype == np.uint8
    assert x[0].tolist() == [[0, 255], [1, 2]]
    assert y.tolist() == [3, 7, 0] and y.dtype == np.uint8
    flat, _ = load_csv(p, image_shape=None, dtype="float32")
    assert flat.shape == (3, 4) and flat.dtype == np.float32
    x_last, y_last = load_csv(p, label_column=-1, image_shape=None)
    assert y_last.tolist() == [2, 7, 0] and x_last[:, 0].tolist() == [3, 7, 0]


def test_load_csv_kaggle_layout(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 784))
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    rows = [",".join(map(str, [lab, *px])) for lab, px in zip([1, 0, 9], pixels, strict=True)]
    x, y = load_csv(_write(tmp_path / "train.csv", "\n".join([header, *rows]) + "\n"))
    assert x.shape == (3, 28, 28) and np.array_equal(x.reshape(3, -1), pixels) and y.tolist() == [1, 0, 9]
    test_header = ",".join(f"pixel{i}" for i in range(784))
    test_rows = [",".join(map(str, px)) for px in pixels]
    x_test = load_csv(_write(tmp_path / "test.csv", "\n".join([test_header, *test_rows]) + "\n"), label_column=None)
    assert isinstance(x_test, np.ndarray) and x_test.shape == (3, 28, 28)


def test_load_csv_without_labels_or_header(tmp_path):
    p = _write(tmp_path / "x.csv", "1,2,3,4\n5,6,7,8\n")
    x = load_csv(p, label_column=None, has_header=False, image_shape=(2, 2))
    assert x.shape == (2, 2, 2) and x[1].tolist() == [[5, 6], [7, 8]]
    _, y = load_csv(_write(tmp_path / "big.csv", "1000,1\n2,3\n"), has_header=False, image_shape=None)
    assert y.dtype == np.int64 and y.tolist() == [1000, 2]


@pytest.mark.parametrize(
    ("text", "kwargs", "pattern"),
    [
        ("label,a,b\n1,2,3\n4,5\n6,7,8\n", {}, r"line 3 has 2 values, but line 2 has 3 \(ragged rows\)"),
        ("label,a,b\n1,2,3\n4,x,5\n", {}, r"line 3, column 2: non-numeric value 'x'"),
        ("label,a,b\n1,2,3\n\n4,5,6\n-1,0,0\n", {}, r"line 5: negative label -1"),
        ("label,a,b\n1,2,3\n4,256,5\n", {}, r"line 3: value 256 \(pixel 0\) is not a whole number in 0\.\.255"),
        ("label,a,b\n1.5,2,3\n", {}, r"line 2: label 1\.5 .*not a whole number"),
        (
            "label,a,b,c\n1,2,3,4\n",
            {"image_shape": (2, 2)},
            r"rows have 3 pixel values plus the label, but image_shape=\(2, 2\) needs 4",
        ),
        ("label,a,b\n", {}, r"no data rows"),
        ("label,a,b\n1,2,3\n", {"has_header": False}, r"line 1, column 1: non-numeric value 'label' \(if line 1 is a header"),
        ("label,a\n1,2,3\n", {"image_shape": None}, r"header \(line 1\) has 2 names, but rows have 3 values"),
    ],
)
def test_load_csv_bad_files(tmp_path, text, kwargs, pattern):
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_csv(p, **{"image_shape": None, **kwargs})
    assert str(p) in str(info.value)
