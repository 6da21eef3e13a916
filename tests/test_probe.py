"""The message probe: scripted provers whose messages encode the label are read at once,
random provers are not; the isomorphism target by hand; ``nip.probe`` and its refusals."""

import json
import math

import numpy as np
import pytest
import torch
from tensordict import TensorDictBase

from nip.config.protocol import ProtocolConfig
from nip.evaluation import record_episodes
from nip.operators import add_episode_return
from nip.probe import fit_probe, probe_messages, split_examples
from nip.protocols import build_protocol_handler
from nip.protocols.base import CONTINUE
from nip.scenarios.graph_iso.environment import GraphIsoEnvironment
from nip.scenarios.graph_iso.probe_targets import corresponds
from nip.scenarios.graph_iso.scenario import GraphIsoScenario
from tests.helpers import random_pairs

NODES = 6


class Prover:
    """The prover points at node ``y`` of graph A (``tell``) or at a random node of graph
    A (``random``); the verifier points at random nodes and never decides."""

    def __init__(self, handler, rule: str):
        self.handler, self.rule = handler, rule
        self.generator = torch.Generator().manual_seed(5)

    def __call__(self, td: TensorDictBase) -> TensorDictBase:
        h = self.handler
        batch = td.batch_size[0]
        item = torch.randint(0, 4, (batch, h.num_agents), generator=self.generator)
        prover = h.agent_names.index("prover")
        if self.rule == "tell":
            item[:, prover] = td["y"]
        action = item[..., None].repeat(1, 1, h.num_channels + 1)
        action[..., -1] = CONTINUE
        td["agents", "action"] = action
        return td


def probe_scripted(rule: str, num_pairs: int = 160, passes: int = 2) -> dict:
    handler = build_protocol_handler(ProtocolConfig())
    dataset = random_pairs(num_pairs, NODES, seed=2)
    env = add_episode_return(GraphIsoEnvironment(dataset, handler, 80, seed=1, shuffle=False))
    results, pointed = record_episodes(env, Prover(handler, rule), passes * num_pairs)
    examples = env.base_env.examples(results.datapoint_id)
    targets = GraphIsoScenario().probe_targets(dataset, results, pointed, examples, handler)
    rows = probe_messages(
        targets,
        pointed,
        env.base_env.num_items,
        results.datapoint_id.numpy(),
        handler.agent_names,
        heldout_fraction=0.3,
        seed=0,
    )
    return {(r["target"], r["messages_of"]): r for r in rows}


def test_messages_that_encode_the_label_are_read_and_random_ones_are_not():
    told = probe_scripted("tell")
    for agents in ("all", "prover"):
        row = told[("label", agents)]
        assert row["accuracy"] == 1.0, row
        assert abs(row["shuffled_accuracy"] - row["chance"]) < 0.15, row
    # The verifier's own messages are random: nothing about the label in them.
    assert (
        abs(told[("label", "verifier")]["accuracy"] - told[("label", "verifier")]["chance"]) < 0.15
    )
    random = probe_scripted("random")
    for agents in ("all", "prover", "verifier"):
        row = random[("label", agents)]
        assert abs(row["accuracy"] - row["chance"]) < 0.15, row
        assert 0.4 < row["chance"] < 0.6  # half the pairs are labelled isomorphic
    # Every episode of an example is on one side of the split.
    assert told[("label", "all")]["num_heldout"] == 2 * round(0.3 * 160)


def test_split_keeps_each_examples_episodes_together_and_is_seeded():
    groups = np.tile(np.arange(10), 3)
    held = split_examples(groups, 0.3, seed=4)
    assert held.sum() == 9
    for g in range(10):
        assert len(set(held[groups == g])) == 1
    assert np.array_equal(held, split_examples(groups, 0.3, seed=4))
    assert not np.array_equal(held, split_examples(groups, 0.3, seed=5))


def test_a_probe_with_one_class_is_skipped_not_scored():
    x = np.random.default_rng(0).normal(size=(20, 3))
    row = fit_probe(x, np.zeros(20, dtype=int), np.arange(20) < 6, seed=0)
    assert row["skipped"] == "one class" and math.isnan(row["accuracy"])
    row = fit_probe(x, np.arange(20) % 2, np.arange(20) < 2, seed=0)
    assert row["skipped"] == "too few episodes"


def test_corresponding_nodes_of_an_isomorphic_pair_by_hand():
    # A: legs of lengths 1, 2 and 3 from centre 0 (the smallest tree without symmetry).
    # B: A relabelled by A's node i -> B's node perm[i].
    edges = [(0, 1), (0, 2), (2, 3), (0, 4), (4, 5), (5, 6)]
    perm = [3, 0, 6, 1, 2, 5, 4]
    adjacency = np.zeros((2, 7, 7), dtype=bool)
    for i, j in edges:
        adjacency[0, i, j] = adjacency[0, j, i] = True
        adjacency[1, perm[i], perm[j]] = adjacency[1, perm[j], perm[i]] = True
    mask = np.ones((2, 7), dtype=bool)
    for u in range(7):
        for v in range(7):
            assert corresponds(adjacency, mask, u, v) == (v == perm[u]), (u, v)
    # A symmetric graph (the path 0-1-2): both ends correspond to both ends.
    path = np.zeros((2, 3, 3), dtype=bool)
    for g in range(2):
        path[g, 0, 1] = path[g, 1, 0] = path[g, 1, 2] = path[g, 2, 1] = True
    ends = {
        (u, v) for u in range(3) for v in range(3) if corresponds(path, np.ones((2, 3), bool), u, v)
    }
    assert ends == {(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)}


def test_probe_command_reports_every_target_and_refuses_bad_input(trained_run, tmp_path, capsys):
    from nip.probe import main

    out = tmp_path / "probe.json"
    main([f"checkpoint={trained_run}", "num_passes=2", f"output={out}"])
    printed = capsys.readouterr().out
    assert "held-out acc" in printed and "matched" in printed
    report = json.loads(out.read_text())
    assert report["num_episodes"] == 2 * report["num_examples"] == 100
    targets = {(r["target"], r["messages_of"]) for r in report["probes"]}
    for target in ("label", "matched", "prover_node_high_degree"):
        assert {(target, "all"), (target, "prover"), (target, "verifier")} <= targets
    for row in report["probes"]:
        assert row["num_train"] + row["num_heldout"] <= 100
        if "skipped" not in row:
            assert 0 <= row["accuracy"] <= 1 and 0 <= row["chance"] <= 1
    for args, message in (
        (["num_passes=0"], "num_passes must be at least 1"),
        (["heldout_fraction=1.5"], "heldout_fraction must be in (0, 1)"),
        ([f"output={tmp_path / 'a_dir_that_is'}"], None),
    ):
        if message is None:
            (tmp_path / "a_dir_that_is").mkdir()
            message = "is a directory"
        with pytest.raises(SystemExit) as exit_info:
            main([f"checkpoint={trained_run}", *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("nip: error: ")
        assert err.count("\n") == 1 and message in err, err
    assert not (trained_run / "probe_split_test.json").exists()
