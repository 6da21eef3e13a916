"""Image sources parsed from tiny files written here in each published format."""

import gzip
import hashlib
import io
import struct
import tarfile
import urllib.error

import numpy as np
import pytest
import torch

from nip.errors import NipDataError
from nip.scenarios.image_classification import sources
from nip.scenarios.image_classification.sources import (
    RemoteFile,
    download,
    ensure_files,
    read_cifar10,
    read_cifar100,
    read_digits,
    read_idx,
    read_idx_dataset,
    read_svhn,
)


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(directory, train_n=5, test_n=3):
    """MNIST-style files; image i has every pixel equal to i and pixel (0, 1) equal to 200."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train_n), ("t10k", test_n)):
        images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], 28, 1).repeat(28, 2)
        images[:, 0, 1] = 200
        labels = (np.arange(n) * 3) % 10
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))


def cifar_record(label_bytes: bytes, value: int) -> bytes:
    """A record whose red plane is ``value``, green ``value + 1``, blue ``value + 2``."""
    planes = [np.full(32 * 32, value + c, dtype=np.uint8) for c in range(3)]
    return label_bytes + b"".join(p.tobytes() for p in planes)


def write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_cifar10(directory):
    directory.mkdir(parents=True, exist_ok=True)
    members = {
        f"cifar-10-batches-bin/data_batch_{b}.bin": b"".join(
            cifar_record(bytes([b]), 10 * b + i) for i in range(2)
        )
        for b in range(1, 6)
    }
    members["cifar-10-batches-bin/test_batch.bin"] = cifar_record(bytes([7]), 100)
    write_tar(directory / "cifar-10-binary.tar.gz", members)


def test_idx_files_are_read_as_published(tmp_path):
    write_idx_dataset(tmp_path / "mnist")
    train, test = read_idx_dataset(tmp_path / "mnist")
    assert train.images.shape == (5, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (3, 1, 28, 28)
    assert train.images[4, 0, 5, 5] == 4 and train.images[4, 0, 0, 1] == 200
    assert train.classes.tolist() == [0, 3, 6, 9, 2] and test.classes.tolist() == [0, 3, 6]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x08", "bad header"),
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4, "bad header"),  # floats
        (b"\x00\x00\x08\x02" + struct.pack(">I", 2), "truncated idx header"),
        (idx_bytes(np.zeros((2, 3)))[:-1], "announces 6 bytes of data, the file has 5"),
    ],
)
def test_damaged_idx_files_are_one_line_errors(tmp_path, data, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(NipDataError, match=message):
        read_idx(path)
    gz = tmp_path / "broken.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(NipDataError, match="cannot read it as an idx file"):
        read_idx(gz)


def test_idx_images_and_labels_must_agree(tmp_path):
    write_idx_dataset(tmp_path / "mnist")
    labels = np.zeros(4, dtype=np.uint8)  # 5 images
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(labels))
    )
    with pytest.raises(NipDataError, match="do not match"):
        read_idx_dataset(tmp_path / "mnist")


def test_cifar10_binary_archive_is_read_channels_first_in_batch_order(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    train, test = read_cifar10(tmp_path / "cifar10")
    assert train.images.shape == (10, 3, 32, 32) and test.images.shape == (1, 3, 32, 32)
    assert train.classes.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # Record 3 is batch 2's second: red 21, green 22, blue 23 everywhere.
    assert train.images[3, :, 7, 9].tolist() == [21, 22, 23]
    assert test.classes.tolist() == [7] and test.images[0, 2, 0, 0] == 102
    assert not (tmp_path / "cifar10" / "cifar-10-batches-bin").exists()  # nothing extracted


def test_cifar100_uses_the_fine_label(tmp_path):
    directory = tmp_path / "cifar100"
    directory.mkdir()
    write_tar(
        directory / "cifar-100-binary.tar.gz",
        {
            "cifar-100-binary/train.bin": cifar_record(bytes([3, 42]), 0)
            + cifar_record(bytes([4, 99]), 5),
            "cifar-100-binary/test.bin": cifar_record(bytes([0, 7]), 1),
        },
    )
    train, test = read_cifar100(directory)
    assert train.classes.tolist() == [42, 99] and test.classes.tolist() == [7]


def test_damaged_cifar_archives_are_one_line_errors(tmp_path):
    directory = tmp_path / "cifar10"
    directory.mkdir()
    write_tar(directory / "cifar-10-binary.tar.gz", {"cifar-10-batches-bin/test_batch.bin": b""})
    with pytest.raises(NipDataError, match="the archive lacks .*data_batch_1.bin"):
        read_cifar10(directory)
    write_cifar10(directory)
    archive = directory / "cifar-10-binary.tar.gz"
    archive.write_bytes(archive.read_bytes()[:100])
    with pytest.raises(NipDataError, match="cannot read the archive"):
        read_cifar10(directory)
    members = {f"cifar-10-batches-bin/data_batch_{b}.bin": b"\x01" * 3000 for b in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = cifar_record(b"\x01", 0)
    write_tar(archive, members)
    with pytest.raises(NipDataError, match="not a whole number of 3073-byte records"):
        read_cifar10(directory)


def test_svhn_mat_files_are_transposed_and_ten_means_zero(tmp_path):
    from scipy.io import savemat

    directory = tmp_path / "svhn"
    directory.mkdir()
    for name, labels in (("train", [10, 3]), ("test", [1])):
        x = np.zeros((32, 32, 3, len(labels)), dtype=np.uint8)
        for i in range(len(labels)):
            x[5, 6, :, i] = [i + 1, i + 2, i + 3]  # row 5, column 6
        savemat(directory / f"{name}_32x32.mat", {"X": x, "y": np.array(labels)[:, None]})
    train, test = read_svhn(directory)
    assert train.images.shape == (2, 3, 32, 32)
    assert train.images[1, :, 5, 6].tolist() == [2, 3, 4] and train.images[1, :, 6, 5].sum() == 0
    assert train.classes.tolist() == [0, 3] and test.classes.tolist() == [1]
    (directory / "test_32x32.mat").write_bytes(b"MATLAB? no")
    with pytest.raises(NipDataError, match="cannot read it as SVHN's .mat file"):
        read_svhn(directory)


def test_digits_need_no_files():
    train, test = read_digits()
    assert train.images.shape == (1438, 1, 8, 8) and test.images.shape == (359, 1, 8, 8)
    assert train.images.max() == 255 and set(train.classes.tolist()) == set(range(10))


class FakeResponse(io.BytesIO):
    headers = {"Content-Length": "11"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


def test_download_checks_the_checksum_and_keeps_nothing_bad(tmp_path, monkeypatch):
    payload = b"hello world"
    monkeypatch.setattr(
        sources.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload)
    )
    good = RemoteFile("f.bin", "http://example.invalid/f.bin", hashlib.md5(payload).hexdigest())
    download(good, tmp_path / "d" / "f.bin", progress_bar=False)
    assert (tmp_path / "d" / "f.bin").read_bytes() == payload
    bad = RemoteFile("g.bin", "http://example.invalid/g.bin", "0" * 32)
    with pytest.raises(NipDataError, match="has MD5 5eb63bbbe01eeed093cb22bb8f5acdc3, expected 0"):
        download(bad, tmp_path / "d" / "g.bin", progress_bar=False)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["f.bin"]


def test_offline_machine_is_told_which_files_to_place(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    with pytest.raises(NipDataError) as error:
        ensure_files("mnist", tmp_path, progress_bar=False)
    message = str(error.value)
    assert "\n" not in message and "cannot download into" in message and "no network" in message
    assert "train-images-idx3-ubyte.gz (https://ossci-datasets.s3.amazonaws.com/mnist/" in message
    # Files placed by hand are used as they are, without the network.
    write_idx_dataset(tmp_path / "mnist")
    assert ensure_files("mnist", tmp_path, progress_bar=False) == tmp_path / "mnist"
