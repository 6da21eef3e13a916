"""Helpers for tests: tiny datasets and configurations that make end-to-end runs fast."""

import dataclasses
from pathlib import Path

import torch

from nip.config.advantage import GaeConfig
from nip.config.loss import ClipLossConfig
from nip.config.protocol import ProtocolConfig
from nip.config.root import HyperParameters
from nip.config.runtime import CheckpointConfig, DeviceConfig, LoggerConfig
from nip.config.schedule import ConstantScheduleConfig
from nip.config.trainer import PpoTrainerConfig
from nip.scenarios.graph_iso.config import GraphIsoAgentConfig, GraphIsoScenarioConfig
from nip.scenarios.graph_iso.dataset import GraphPairDataset


def random_pairs(num_pairs: int, num_nodes: int = 6, seed: int = 0) -> GraphPairDataset:
    """Random graph pairs (not WL-scored: half labelled isomorphic) for environment tests."""
    g = torch.Generator().manual_seed(seed)
    upper = torch.rand(num_pairs, 2, num_nodes, num_nodes, generator=g) < 0.4
    upper = upper.triu(1)
    adjacency = upper | upper.transpose(-1, -2)
    sizes = torch.randint(num_nodes - 2, num_nodes + 1, (num_pairs, 1), generator=g)
    node_mask = (torch.arange(num_nodes) < sizes)[:, None, :].expand(num_pairs, 2, num_nodes)
    adjacency = adjacency & node_mask[..., :, None] & node_mask[..., None, :]
    wl_score = torch.where(torch.arange(num_pairs) % 2 == 0, -1, 2)
    return GraphPairDataset(
        adjacency=adjacency, node_mask=node_mask.clone(), wl_score=wl_score.long()
    )


def use_datasets(monkeypatch, train: GraphPairDataset, test: GraphPairDataset) -> None:
    """Make the GI scenario serve ``train`` and ``test`` instead of generating datasets."""
    from nip.scenarios.graph_iso.scenario import GraphIsoScenario

    monkeypatch.setattr(GraphIsoScenario, "build_datasets", lambda self, p, c: (train, test))


def tiny_agent(num_gnn_layers: int) -> GraphIsoAgentConfig:
    return GraphIsoAgentConfig(
        num_gnn_layers=num_gnn_layers,
        d_gnn=8,
        d_gin_mlp=8,
        num_heads=2,
        d_transformer=8,
        d_transformer_mlp=8,
        d_node_selector=8,
        d_decider=8,
        d_value=8,
    )


def tiny_hyper_params(cache_dir: Path, **trainer_overrides) -> HyperParameters:
    """Tiny run settings with tiny networks, for fast end-to-end runs."""
    trainer = PpoTrainerConfig(
        num_iterations=2,
        frames_per_batch=64,
        num_epochs=1,
        minibatch_size=32,
        num_normalization_frames=64,
    )
    trainer = dataclasses.replace(trainer, **trainer_overrides)
    return HyperParameters(
        seed=11,
        trainer=trainer,
        scenario=GraphIsoScenarioConfig(
            num_train_pairs=200,
            num_test_pairs=50,
            d_representation=8,
            prover=tiny_agent(2),
            verifier=tiny_agent(1),
        ),
        protocol=ProtocolConfig(),
        loss=ClipLossConfig(),
        advantage=GaeConfig(),
        schedule=ConstantScheduleConfig(),
        device=DeviceConfig(type="cpu"),
        logger=LoggerConfig(progress_bar=False),
        checkpoint=CheckpointConfig(interval=1),
        cache_dir=str(cache_dir),
    )


def tiny_protocol_run(tmp_path: Path, protocol) -> tuple[object, list[dict]]:
    """Train the tiny config with ``protocol`` on random pairs; return trainer and metrics.

    The caller must have replaced the datasets (see ``use_datasets``, ``small_datasets``).
    """
    import json

    from nip.experiment_settings import ExperimentSettings
    from nip.run import run_experiment

    hp = tiny_hyper_params(tmp_path / "cache")
    hp.protocol = protocol
    rounds = protocol.max_message_rounds
    hp.trainer.frames_per_batch = 16 * rounds
    hp.trainer.minibatch_size = 8 * rounds
    settings = ExperimentSettings(run_dir=tmp_path / "run", progress_bar=False, cache_dir=tmp_path)
    trainer = run_experiment(hp, settings)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return trainer, rows


# Metrics that depend on the machine (timings, memory), left out of comparisons.
TIME_KEYS = ("time_", "frames_per_s", "examples_per_s", "sys_")


def run_settings(run_dir: Path):
    """Experiment settings for a run in ``run_dir`` (no progress bar; cache beside it)."""
    from nip.experiment_settings import ExperimentSettings

    return ExperimentSettings(
        run_dir=run_dir, progress_bar=False, cache_dir=run_dir.parent / "cache"
    )


def read_metrics(run_dir: Path) -> list[dict]:
    """A run's metrics lines without the machine-dependent fields."""
    import json

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(TIME_KEYS)} for r in rows]


def build_tiny_trainer(tmp_path: Path, **trainer_overrides):
    """A trainer for the tiny settings in ``tmp_path / "run"`` (datasets as patched)."""
    from nip.factory import build_scenario_instance, build_trainer

    hp = tiny_hyper_params(tmp_path / "cache", **trainer_overrides)
    s = run_settings(tmp_path / "run")
    return build_trainer(hp, build_scenario_instance(hp, s), s)


# What every command-line run of a test sets: one CPU thread, no progress bar.
RUNTIME_OVERRIDES = ["device=cpu", "device.num_threads=1", "logger.progress_bar=false"]
# Command-line overrides for runs that take seconds with the paper's networks: little data,
# short iterations, one thread (so figures do not depend on the machine's core count).
TINY_DATA_OVERRIDES = [
    "trainer.frames_per_batch=64",
    "trainer.num_epochs=1",
    "trainer.minibatch_size=32",
    "trainer.num_normalization_frames=64",
    "scenario.num_train_pairs=200",
    "scenario.num_test_pairs=50",
    *RUNTIME_OVERRIDES,
]
# ... and with one-layer GNNs, for runs that must be quicker still.
TINY_OVERRIDES = [
    *TINY_DATA_OVERRIDES,
    "scenario.prover.num_gnn_layers=1",
    "scenario.verifier.num_gnn_layers=1",
]


def interrupt_on_call(obj, name: str, call: int, before=None) -> None:
    """Make ``obj.<name>`` raise ``KeyboardInterrupt`` on its ``call``-th call (1-based),
    after running ``before()``; other calls go through (a crash in the middle of training)."""
    original = getattr(obj, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            if before is not None:
                before()
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    setattr(obj, name, wrapper)
