"""CIFAR-10 (binary version): files written here in the official layout, the search order, the download from a local server.

No copy of CIFAR-10 is on this machine and there is no network: every file is written by the test
itself (``cifar-10-batches-bin/data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``: 10000
records of a label byte and 3072 pixel bytes each), and downloads are served on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import portnn as pn
from portnn.cli import main
from portnn.datasets import DatasetError, load_cifar10
from portnn.datasets import cifar10 as cifar_mod

NAMES = [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]


@functools.cache
def fake_files(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Images and labels of each of the six files: label i of file f is (i + f) % 10, pixels random."""
    r = np.random.default_rng(seed)
    return {
        name: (r.integers(0, 256, size=(10000, 3, 32, 32), dtype=np.uint8), ((np.arange(10000) + f) % 10).astype(np.uint8))
        for f, name in enumerate(NAMES)
    }


def record_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The official layout: per record a label byte, then the R, G, B planes, each 32 rows of 32 bytes."""
    return np.concatenate([labels[:, None], images.reshape(len(images), 3 * 32 * 32)], axis=1).tobytes()


def test_the_layout_written_here_is_the_described_one():
    images, labels = fake_files()["data_batch_2.bin"]
    data = record_bytes(images, labels)
    for i in (0, 1, 9999):
        record = data[i * 3073 : (i + 1) * 3073]
        assert record[0] == labels[i]
        assert record[1 : 1 + 1024] == images[i, 0].tobytes()  # red, row-major
        assert record[1 + 32 * 5 + 7] == images[i, 0, 5, 7]
        assert record[1 + 2048 :] == images[i, 2].tobytes()  # blue


@pytest.fixture(scope="module")
def files() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return fake_files()


@pytest.fixture(scope="module")
def raw(files) -> dict[str, bytes]:
    return {name: record_bytes(*files[name]) for name in NAMES}


def write_folder(folder: Path, raw: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in raw.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("PORTNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(cifar_mod, "CIFAR10_MIRRORS", [])


def check(dataset, files) -> None:
    (x_train, y_train), (x_test, y_test) = dataset
    assert x_train.shape == (50000, 3, 32, 32) and x_train.dtype == np.uint8 and y_train.shape == (50000,)
    assert x_test.shape == (10000, 3, 32, 32) and y_test.shape == (10000,)
    np.testing.assert_array_equal(x_train, np.concatenate([files[n][0] for n in NAMES[:5]]))
    np.testing.assert_array_equal(y_train, np.concatenate([files[n][1] for n in NAMES[:5]]))
    np.testing.assert_array_equal(x_test, files["test_batch.bin"][0])
    np.testing.assert_array_equal(y_test, files["test_batch.bin"][1])
    assert x_train.flags.writeable and x_train.flags.owndata


def test_reads_the_official_layout_channels_first(tmp_path, raw, files):
    write_folder(tmp_path / "cifar-10-batches-bin", raw)
    check(load_cifar10(tmp_path, download=False), files)
    check(load_cifar10(tmp_path / "cifar-10-batches-bin", download=False), files)


def test_search_order_is_data_dir_then_env_then_cache(tmp_path, raw, files, monkeypatch):
    other = {name: record_bytes(*fake_files(1)[name]) for name in NAMES}
    write_folder(tmp_path / "xdg-cache" / "portnn" / "cifar-10-batches-bin", other)
    assert np.array_equal(load_cifar10(download=False)[1][0], fake_files(1)["test_batch.bin"][0])  # the cache
    write_folder(tmp_path / "env" / "cifar10", raw)
    monkeypatch.setenv("PORTNN_DATA_DIR", str(tmp_path / "env"))
    check(load_cifar10(download=False), files)  # the environment before the cache
    write_folder(tmp_path / "given", other)
    assert np.array_equal(load_cifar10(tmp_path / "given", download=False)[1][0], fake_files(1)["test_batch.bin"][0])


def test_not_found_lists_every_folder_and_the_fix(tmp_path, raw):
    partial = write_folder(tmp_path / "given" / "cifar-10-batches-bin", {n: raw[n] for n in NAMES[:2]})
    with pytest.raises(DatasetError) as info:
        load_cifar10(tmp_path / "given", download=False)
    msg = str(info.value)
    assert f"{partial} (data_dir): missing data_batch_3.bin, data_batch_4.bin, data_batch_5.bin, test_batch.bin" in msg
    assert "user cache" in msg and "download=False" in msg and "--dataset cifar10 --data-dir" in msg


def test_a_truncated_file_or_a_bad_label_is_named(tmp_path, raw):
    folder = write_folder(tmp_path / "cifar-10-batches-bin", raw)
    (folder / "data_batch_3.bin").write_bytes(raw["data_batch_3.bin"][:-5])
    with pytest.raises(DatasetError, match=r"data_batch_3.bin: 30729995 bytes; a CIFAR-10 batch file holds 10000 records"):
        load_cifar10(tmp_path, download=False)
    bad = bytearray(raw["data_batch_3.bin"])
    bad[7 * 3073] = 12
    (folder / "data_batch_3.bin").write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match="data_batch_3.bin: record 7 has label 12"):
        load_cifar10(tmp_path, download=False)


# -- download ---------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path, request):
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002
            pass

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


def archive_bytes(raw: dict[str, bytes], extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, data in {**{f"cifar-10-batches-bin/{n}": d for n, d in raw.items()}, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archive(raw) -> bytes:
    """A cifar-10-binary.tar.gz of the test's files, with a readme and a member whose path leaves the folder."""
    return archive_bytes(raw, {"cifar-10-batches-bin/readme.html": b"<html>", "../escape.bin": b"x"})


def test_download_checks_the_archive_and_extracts_only_the_batch_files(tmp_path, archive, files, server, monkeypatch):
    good = archive
    (server.root / "bad").mkdir()
    (server.root / "bad" / "cifar-10-binary.tar.gz").write_bytes(good[:-100] + bytes(100))  # damaged in transit
    (server.root / "cifar-10-binary.tar.gz").write_bytes(good)
    monkeypatch.setattr(cifar_mod, "ARCHIVE_MD5", hashlib.md5(good).hexdigest())  # the test's archive stands for the real
    monkeypatch.setattr(cifar_mod, "CIFAR10_MIRRORS", [server.url + "missing", server.url + "bad", server.url])
    target = tmp_path / "target"
    check(load_cifar10(target), files)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "cifar-10-batches-bin",
        *(f"cifar-10-batches-bin/{n}" for n in sorted(NAMES)),
    ]  # no readme, no file outside the folder, no archive, no temporary file
    assert server.requests == ["/missing/cifar-10-binary.tar.gz", "/bad/cifar-10-binary.tar.gz", "/cifar-10-binary.tar.gz"]
    check(load_cifar10(target), files)  # found again: no request
    assert len(server.requests) == 3


def test_a_download_that_fails_its_checksum_never_lands(tmp_path, archive, server, monkeypatch):
    (server.root / "cifar-10-binary.tar.gz").write_bytes(archive)  # not the published archive
    monkeypatch.setattr(cifar_mod, "CIFAR10_MIRRORS", [server.url])
    with pytest.raises(DatasetError) as info:
        load_cifar10(tmp_path / "target")
    assert f"checksum mismatch: MD5 {hashlib.md5(archive).hexdigest()}" in str(info.value)
    assert "c32a1d4ab5d03f1284b67883e8d87530" in str(info.value)
    assert not (tmp_path / "target").exists(), "a rejected download left files or folders behind"


@pytest.mark.slow
def test_portnn_train_takes_cifar10(tmp_path, raw, capsys):
    write_folder(tmp_path / "cifar-10-batches-bin", raw)
    args = ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download", "--epochs", "1"]
    assert main([*args, "--limit", "512", "--hidden", "16", "--quiet"]) == 0
    assert main([*args, "--preset", "cnn", "--limit", "256", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out.lower() or "accuracy" in out.lower()
    assert pn.datasets.cifar10.CIFAR10_CLASSES[3] == "cat"
