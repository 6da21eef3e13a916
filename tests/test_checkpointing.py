"""RNG state in checkpoints, including every GPU's generator when CUDA is in use."""

import torch

from nip.checkpointing import (
    atomic_torch_save,
    capture_rng_state,
    load_checkpoint_file,
    restore_rng_state,
)


def test_gpu_generator_states_round_trip(tmp_path, monkeypatch):
    """A fake two-GPU machine: both generator states are saved, loaded with weights_only
    and handed back to CUDA on restore."""
    states = [torch.arange(8, dtype=torch.uint8), torch.arange(8, 16, dtype=torch.uint8)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda state, device: restored.__setitem__(device, state)
    )
    state = capture_rng_state()
    atomic_torch_save({"format_version": 1, "rng": state}, tmp_path / "state.pt")
    loaded = load_checkpoint_file(tmp_path / "state.pt")["rng"]
    restore_rng_state(loaded)
    assert sorted(restored) == [0, 1]
    assert all(torch.equal(restored[i], states[i]) for i in range(2))


def test_cpu_only_checkpoint_has_no_gpu_state():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return
    assert "cuda" not in capture_rng_state()
