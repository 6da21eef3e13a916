"""Image datasets read from their standard published files, downloaded when missing.

Each source is parsed from the format its authors publish, without ``pickle``: MNIST-style
idx files (MNIST, Fashion-MNIST, KMNIST), the binary version of CIFAR-10/100 (read from the
archive, nothing extracted), SVHN's MATLAB files (through :func:`scipy.io.loadmat`), and
scikit-learn's bundled 8x8 digits (offline, no files at all).
"""

import gzip
import hashlib
import logging
import struct
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nip.errors import NipDataError

log = logging.getLogger("nip")


@dataclass(frozen=True)
class RemoteFile:
    """A published file: its name in ``data_dir/<dataset>/``, where to get it, its MD5."""

    name: str
    url: str
    md5: str


@dataclass
class RawSplit:
    """One split of a source: ``uint8`` images ``[N, C, H, W]`` and class ids ``[N]``."""

    images: Tensor
    classes: Tensor


@dataclass(frozen=True)
class Source:
    """A dataset's files and how to read its train and test splits from them."""

    files: tuple[RemoteFile, ...]
    read: Callable[[Path], tuple[RawSplit, RawSplit]]
    num_classes: int
    image_shape: tuple[int, int, int]


# -- formats ---------------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped) as an array: ``uint8`` data only, as MNIST uses.

    Raises
    ------
    NipDataError
        When the header or the size is not that of an idx file of unsigned bytes.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise NipDataError(f"{path}: cannot read it as an idx file ({e})") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise NipDataError(f"{path}: not an idx file of unsigned bytes (bad header)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise NipDataError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise NipDataError(
            f"{path}: idx header announces {int(np.prod(shape))} bytes of data, the file has "
            f"{len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_split(directory: Path, prefix: str, num_classes: int) -> RawSplit:
    images = read_idx(directory / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise NipDataError(
            f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not match"
        )
    return _checked(
        RawSplit(torch.from_numpy(images.copy())[:, None], _classes(labels)), directory, num_classes
    )


def _classes(labels: np.ndarray) -> Tensor:
    return torch.from_numpy(labels.astype(np.int64))


def _checked(split: RawSplit, where: Path, num_classes: int) -> RawSplit:
    """``split`` after checking its class ids lie in ``[0, num_classes)``."""
    if len(split.classes) and (split.classes.min() < 0 or split.classes.max() >= num_classes):
        raise NipDataError(f"{where}: class ids outside 0..{num_classes - 1}")
    return split


def read_idx_dataset(directory: Path) -> tuple[RawSplit, RawSplit]:
    """MNIST, Fashion-MNIST and KMNIST: the four gzipped idx files."""
    return _idx_split(directory, "train", 10), _idx_split(directory, "t10k", 10)


def _cifar_records(data: bytes, where: str, label_bytes: int, label_index: int) -> RawSplit:
    """CIFAR binary records: label byte(s) then 3 x 32 x 32 pixels (channels first)."""
    record = label_bytes + 3 * 32 * 32
    if len(data) == 0 or len(data) % record:
        raise NipDataError(
            f"{where}: {len(data)} bytes is not a whole number of {record}-byte records"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    images = torch.from_numpy(rows[:, label_bytes:].copy()).reshape(-1, 3, 32, 32)
    return RawSplit(images, _classes(rows[:, label_index]))


def _read_archive_members(archive: Path, names: list[str]) -> dict[str, bytes]:
    """Regular-file members of a tar archive by name, read without extracting anything."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isfile() and member.name in names:
                    found[member.name] = tar.extractfile(member).read()
    except (OSError, EOFError, tarfile.TarError) as e:
        raise NipDataError(f"{archive}: cannot read the archive ({e})") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise NipDataError(f"{archive}: the archive lacks {', '.join(missing)}")
    return found


def read_cifar10(directory: Path) -> tuple[RawSplit, RawSplit]:
    """CIFAR-10, binary version: five training batches and one test batch."""
    archive = directory / "cifar-10-binary.tar.gz"
    train_names = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    test_name = "cifar-10-batches-bin/test_batch.bin"
    members = _read_archive_members(archive, [*train_names, test_name])
    train = [_cifar_records(members[n], f"{archive}:{n}", 1, 0) for n in train_names]
    train_split = RawSplit(
        torch.cat([s.images for s in train]), torch.cat([s.classes for s in train])
    )
    test_split = _cifar_records(members[test_name], f"{archive}:{test_name}", 1, 0)
    return _checked(train_split, archive, 10), _checked(test_split, archive, 10)


def read_cifar100(directory: Path) -> tuple[RawSplit, RawSplit]:
    """CIFAR-100, binary version: coarse and fine label bytes; the 100 fine classes are used."""
    archive = directory / "cifar-100-binary.tar.gz"
    names = ["cifar-100-binary/train.bin", "cifar-100-binary/test.bin"]
    members = _read_archive_members(archive, names)
    train, test = (_cifar_records(members[n], f"{archive}:{n}", 2, 1) for n in names)
    return _checked(train, archive, 100), _checked(test, archive, 100)


def _svhn_split(path: Path) -> RawSplit:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
        x, y = mat["X"], mat["y"]
    # scipy raises several types for a file that is not a MATLAB v5 file with X and y
    # (a MATLAB 7.3 / HDF5 file among them); each is the same one-line error here.
    except Exception as e:
        raise NipDataError(f"{path}: cannot read it as SVHN's .mat file ({e})") from None
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.size:
        raise NipDataError(f"{path}: X {x.shape} and y {y.shape} are not SVHN's 32x32x3xN and N")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8))
    # SVHN labels the digit 0 as 10.
    return _checked(RawSplit(images, _classes(y.reshape(-1) % 10)), path, 10)


def read_svhn(directory: Path) -> tuple[RawSplit, RawSplit]:
    """SVHN cropped digits: ``train_32x32.mat`` and ``test_32x32.mat``."""
    return _svhn_split(directory / "train_32x32.mat"), _svhn_split(directory / "test_32x32.mat")


def read_digits(directory: Path | None = None) -> tuple[RawSplit, RawSplit]:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0-16), no files needed.

    The images are scaled to 0-255; the last fifth (in scikit-learn's order) is the test
    split, so the split does not depend on any seed.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.rint(digits.images * (255 / 16)).astype(np.uint8))[:, None]
    classes = _classes(digits.target)
    cut = len(classes) - len(classes) // 5
    return RawSplit(images[:cut], classes[:cut]), RawSplit(images[cut:], classes[cut:])


def _idx_files(base: str, md5s: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    return tuple(RemoteFile(n, f"{base}/{n}", m) for n, m in zip(names, md5s, strict=True))


SOURCES: dict[str, Source] = {
    "digits": Source((), read_digits, 10, (1, 8, 8)),
    "mnist": Source(
        _idx_files(
            "https://ossci-datasets.s3.amazonaws.com/mnist",
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        ),
        read_idx_dataset,
        10,
        (1, 28, 28),
    ),
    "fashion_mnist": Source(
        _idx_files(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
        read_idx_dataset,
        10,
        (1, 28, 28),
    ),
    "kmnist": Source(
        _idx_files(
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist",
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
        ),
        read_idx_dataset,
        10,
        (1, 28, 28),
    ),
    "cifar10": Source(
        (
            RemoteFile(
                "cifar-10-binary.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                "c32a1d4ab5d03f1284b67883e8d87530",
            ),
        ),
        read_cifar10,
        10,
        (3, 32, 32),
    ),
    "cifar100": Source(
        (
            RemoteFile(
                "cifar-100-binary.tar.gz",
                "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                "03b5dce01913d631647c71ecec9e9cb8",
            ),
        ),
        read_cifar100,
        100,
        (3, 32, 32),
    ),
    "svhn": Source(
        (
            RemoteFile(
                "train_32x32.mat",
                "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                "e26dedcc434d2e4c54c9b2d4a06d8373",
            ),
            RemoteFile(
                "test_32x32.mat",
                "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                "eb5a983be6a315427106f1b164d9cef3",
            ),
        ),
        read_svhn,
        10,
        (3, 32, 32),
    ),
}


# -- download --------------------------------------------------------------------------------


def md5_of(path: Path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(remote: RemoteFile, target: Path, progress_bar: bool = True) -> None:
    """Fetch ``remote`` to ``target`` (through a temporary file) and check its MD5.

    Raises
    ------
    OSError
        When the file cannot be fetched (e.g. no network).
    NipDataError
        When the fetched file's checksum is wrong (it is not kept).
    """
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    with urllib.request.urlopen(remote.url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            open(partial, "wb") as f,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"downloading {remote.name}",
                disable=not progress_bar,
            ) as bar,
        ):
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
                bar.update(len(chunk))
    found = md5_of(partial)
    if found != remote.md5:
        partial.unlink(missing_ok=True)
        raise NipDataError(
            f"the download of {remote.url} has MD5 {found}, expected {remote.md5}; try again"
        )
    partial.replace(target)


def ensure_files(name: str, data_dir: Path, progress_bar: bool = True) -> Path:
    """``data_dir/<name>``, holding the source's files; missing ones are downloaded.

    Files already there are used as they are (their contents are validated when parsed), so
    a machine without network can be given the files by hand.

    Raises
    ------
    NipDataError
        One line: missing files that cannot be downloaded (naming the files and their
        addresses), or a download with the wrong checksum.
    """
    source = SOURCES[name]
    directory = Path(data_dir).expanduser() / name
    missing = [f for f in source.files if not (directory / f.name).is_file()]
    try:
        for remote in missing:
            log.info(f"downloading {remote.url} to {directory}")
            download(remote, directory / remote.name, progress_bar)
    except OSError as e:
        files = ", ".join(f"{f.name} ({f.url})" for f in missing)
        reason = getattr(e, "reason", None) or e.strerror or e
        raise NipDataError(
            f"scenario.dataset={name}: cannot download into {directory} ({reason}); "
            f"place these files there: {files}"
        ) from None
    return directory
