"""Atomic checkpoint files and the RNG state that makes a resumed run bit-identical."""

import errno
import io
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from nip.errors import NipCheckpointError, NipRunError

STATE_FILE = "state.pt"
CHECKPOINT_FORMAT_VERSION = 1


def _atomic_write(path: Path, write: Any) -> None:
    """Write through ``write(file_object)`` to a temp file beside ``path``, then rename.

    A reader (or a resumed run after SIGKILL) sees either the old file or the new one, never a
    half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        _raise_no_space(e, path, f"the previous {path.name} is intact")
        raise
    try:
        # mkstemp creates the file private (0600); give it the mode a plain open would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            _raise_no_space(e, path, f"the previous {path.name} is intact")
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _raise_no_space(error: OSError, path: Path, intact: str) -> None:
    """Raise a one-line :class:`NipRunError` if ``error`` is a full disk (or quota)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        raise no_space_error(path, intact) from error


def no_space_error(path: Path, intact: str) -> NipRunError:
    """The one-line error for a full disk while writing ``path``; ``intact`` says what is."""
    try:
        free = f"{shutil.disk_usage(Path(path).parent).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return NipRunError(
        f"no space left on the device to write {path} ({free}); {intact}; free some space "
        f"and run the same command to resume"
    )


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves a partial file at ``path``.

    The object is serialised in memory first, so a full disk shows up as the operating
    system's ``ENOSPC`` on the plain file write (torch's own writer reports it as a generic
    ``RuntimeError``).
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getbuffer()
    _atomic_write(Path(path), lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically."""
    _atomic_write(Path(path), lambda f: f.write(data))


def remove_stale_temporaries(*directories: Path) -> list[Path]:
    """Delete what interrupted atomic writes left in ``directories`` (``.<name>.*.tmp*``).

    Only safe while holding the run directory's lock: then no other process is writing.
    Returns the removed paths.
    """
    removed = []
    for directory in directories:
        if not Path(directory).is_dir():
            continue
        for path in Path(directory).glob(".*.tmp*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (sorted keys, indented)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def resolve_checkpoint_path(path: str | Path) -> Path:
    """The state file for a run directory, a checkpoints directory or a state file.

    Raises
    ------
    NipCheckpointError
        If no checkpoint is found there.
    """
    path = Path(path).expanduser()
    for candidate in (path, path / STATE_FILE, path / "checkpoints" / STATE_FILE):
        if candidate.is_file():
            return candidate
    if path.name == "latest" and (path.parent / STATE_FILE).is_file():
        return path.parent / STATE_FILE
    raise NipCheckpointError(f"no checkpoint found at {path}")


def load_checkpoint_file(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_torch_save` (no pickled code is executed).

    ``mmap`` maps the file instead of reading it: tensors are read only when touched (for
    readers that want the progress fields alone).

    Raises
    ------
    NipCheckpointError
        If the file cannot be read or is not a checkpoint of this format.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises many types for corrupt files
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NipCheckpointError(f"cannot read checkpoint {path}: {first_line}") from e
    if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise NipCheckpointError(f"{path} is not a nip checkpoint (unknown format)")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's global generator states, in ``weights_only`` types.

    With CUDA in use, every GPU's generator state is included (``cuda``: one byte tensor per
    device), so sampling on the GPU also continues the same stream after a resume.
    """
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    # Only once CUDA is initialised: querying it earlier would start a CUDA context.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`.

    GPU generator states are restored when the checkpoint has them and CUDA is available
    (a run resumed on a machine without a GPU continues on the CPU's stream only).
    """
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available():
        for index, device_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


def tensordict_to_state(td: TensorDictBase) -> dict[str, Any]:
    """A flat ``{key: tensor}`` dict plus batch size, loadable with ``weights_only``."""
    flat = td.flatten_keys("/")
    return {
        "batch_size": list(td.batch_size),
        "tensors": {k: v.detach().cpu() for k, v in flat.items()},
    }


def tensordict_from_state(state: dict[str, Any], device: torch.device) -> TensorDict:
    """Inverse of :func:`tensordict_to_state`."""
    flat = TensorDict(state["tensors"], batch_size=state["batch_size"])
    return flat.unflatten_keys("/").to(device)
