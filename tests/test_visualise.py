"""Episode pictures: what scripted agents pointed at is what the pictures ring, per round;
``nip.visualise`` on a trained run, its filters, and its one-line refusals."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDictBase

from nip.config.protocol import MultiProverProtocolConfig, ProtocolConfig
from nip.episodes import SILENT, Episode, agent_colours, figure_pixels
from nip.evaluation import record_episodes, run_episodes
from nip.operators import add_episode_return
from nip.protocols import build_protocol_handler
from nip.protocols.base import ACCEPT, CONTINUE
from nip.scenarios.graph_iso.environment import GraphIsoEnvironment
from nip.scenarios.graph_iso.scenario import GraphIsoScenario
from tests.helpers import random_pairs

ROOT = Path(__file__).resolve().parent.parent
NUM_PAIRS = 12
NODES = 6  # random_pairs graphs have 4 to 6 nodes: scripted agents point at nodes 0-3


class Pointer:
    """Agent ``a`` points at node ``(a + r) % 4`` of graph ``r % 2`` in round ``r``, in every
    channel; the verifier never decides (``never``), or accepts as soon as it may on even
    datapoints and never decides on odd ones (``accept``: episodes end at different rounds)."""

    def __init__(self, handler, rule: str = "never"):
        self.handler, self.rule = handler, rule

    def __call__(self, td: TensorDictBase) -> TensorDictBase:
        h = self.handler
        batch, r = td.batch_size[0], td["round"]
        agents = torch.arange(h.num_agents)
        item = (r[:, None] % 2) * NODES + (agents[None] + r[:, None]) % 4  # [B, A]
        action = item[..., None].repeat(1, 1, h.num_channels + 1)
        decision = torch.full((batch, h.num_agents), CONTINUE)
        v = h.verifier_index
        if self.rule == "accept":
            allowed = td["agents", "decision_active"][:, v] & (td["datapoint_id"] % 2 == 0)
            decision[:, v] = torch.where(allowed, ACCEPT, CONTINUE)
        else:
            own_turn = h.guess_mask(td["round"], td["seed"])
            decision[:, v] = torch.where(own_turn, CONTINUE, ACCEPT)
        action[..., -1] = decision
        td["agents", "action"] = action
        return td


def play(config, rule: str = "never"):
    """The handler and ``(results, pointed, examples)`` of scripted episodes."""
    handler = build_protocol_handler(config)
    env = GraphIsoEnvironment(random_pairs(NUM_PAIRS, NODES), handler, 5, seed=3, shuffle=False)
    results, pointed = record_episodes(add_episode_return(env), Pointer(handler, rule), NUM_PAIRS)
    return handler, (results, pointed, env.examples(results.datapoint_id))


def expected_speakers(name: str, r: int) -> list[tuple[str, int]]:
    """Who speaks in round ``r``, in which channel, by the protocols' rules (written out)."""
    if name == "nip":
        return [("verifier", 0)] if r % 2 == 0 else [("prover", 0)]
    return [("verifier", 0), ("verifier", 1)] if r % 2 == 0 else [("prover0", 0), ("prover1", 1)]


PROTOCOLS = {"nip": ProtocolConfig(), "mnip": MultiProverProtocolConfig(name="mnip")}


def episode_at(handler, recorded, i: int) -> Episode:
    return Episode.recorded(recorded, i, {"wl_score": torch.full((NUM_PAIRS,), 2)}, (2, NODES))


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_recorded_choices_are_the_agents_choices_in_their_turns(name):
    handler, (results, pointed, examples) = play(PROTOCOLS[name])
    # Same episodes as the evaluation plays.
    plain = run_episodes(
        add_episode_return(
            GraphIsoEnvironment(random_pairs(NUM_PAIRS, NODES), handler, 5, seed=3, shuffle=False)
        ),
        Pointer(handler),
        NUM_PAIRS,
    )
    assert torch.equal(plain.decision, results.decision)
    assert results.datapoint_id.tolist() == list(range(NUM_PAIRS))
    assert torch.equal(examples["adjacency"], random_pairs(NUM_PAIRS, NODES).adjacency)
    T = handler.max_message_rounds
    assert pointed.shape == (NUM_PAIRS, T, handler.num_agents, handler.num_channels, 1)
    for r in range(T):
        expected = torch.full(pointed.shape[2:], SILENT)
        for agent, channel in expected_speakers(name, r):
            a = handler.agent_names.index(agent)
            expected[a, channel] = (r % 2) * NODES + (a + r) % 4
        assert torch.equal(pointed[:, r], expected.expand_as(pointed[:, r])), r


def test_nothing_is_recorded_after_the_episode_ends():
    handler, (results, pointed, _) = play(ProtocolConfig(), "accept")
    lengths = results.length
    T = handler.max_message_rounds
    assert (lengths[::2] < T).all() and (lengths[1::2] == T).all()
    for e in range(NUM_PAIRS):
        assert (pointed[e, lengths[e] :] == SILENT).all()
        assert (pointed[e, : lengths[e]] != SILENT).any(-1).any(-1).any(-1).all()


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_graph_pictures_ring_each_choice_in_its_agents_colour(name):
    handler, recorded = play(PROTOCOLS[name])
    episode = episode_at(handler, recorded, 1)
    figure = GraphIsoScenario().episode_figure(episode, handler.agent_names, handler.channel_names)
    rings = [
        p for ax in figure.axes for p in ax.patches if (p.get_gid() or "").startswith("pointed")
    ]
    colours = agent_colours(handler.agent_names)
    per_round: dict[int, set] = {}
    for ring in rings:
        _, agent, r, c, g, node = ring.get_gid().split("|")
        r, c, g, node = int(r), int(c), int(g), int(node)
        per_round.setdefault(r, set()).add((agent, c))
        a = handler.agent_names.index(agent)
        assert (g, node) == (r % 2, (a + r) % 4)
        # Drawn on the axes of its graph, in its agent's colour.
        assert ring in figure.axes[g].patches
        assert np.allclose(ring.get_edgecolor()[:3], np.array(_rgb(colours[agent])) / 255)
    assert sorted(per_round) == list(range(episode.length))
    for r, speakers in per_round.items():
        assert speakers == set(expected_speakers(name, r))
    # Round tags: one per ring, "r<round>" (with the channel when there are several).
    tags = [t.get_text() for ax in figure.axes for t in ax.texts if t.get_text().startswith("r")]
    assert len(tags) == len(rings)
    assert "ran out" in figure._suptitle.get_text()


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def colour_pixels(pixels: np.ndarray, hex_colour: str) -> int:
    return int((np.abs(pixels.astype(int) - _rgb(hex_colour)).max(-1) <= 12).sum())


def test_graph_picture_pixels_show_only_the_agents_that_spoke():
    handler, recorded = play(ProtocolConfig(), "accept")
    episode = episode_at(handler, recorded, 0)
    assert episode.length >= 2  # the verifier (round 0) and the prover (round 1) spoke
    pixels = figure_pixels(
        GraphIsoScenario().episode_figure(episode, handler.agent_names, handler.channel_names)
    )
    colours = agent_colours(("prover", "verifier", "unused"))
    assert colour_pixels(pixels, colours["prover"]) > 50
    assert colour_pixels(pixels, colours["verifier"]) > 50
    assert colour_pixels(pixels, colours["unused"]) == 0
    # A silent prover leaves no trace of its colour (its legend entry aside).
    silent = Episode(**{**episode.__dict__, "pointed": episode.pointed.clone()})
    silent.pointed[:, 0] = SILENT
    quiet = figure_pixels(
        GraphIsoScenario().episode_figure(silent, handler.agent_names, handler.channel_names)
    )
    assert colour_pixels(quiet, colours["prover"]) < colour_pixels(pixels, colours["prover"])


def test_image_picture_has_one_captioned_panel_per_round_with_a_message():
    from nip.scenarios.image_classification.scenario import ImageClassificationScenario

    pointed = torch.full((4, 2, 1, 1), SILENT)
    pointed[0, 1, 0, 0] = 3  # round 0: the verifier points at latent pixel (1, 1)
    pointed[1, 0, 0, 0] = 0  # round 1: the prover at (0, 0); rounds 2-3 silent
    episode = Episode(
        datapoint_id=5,
        label=1,
        decision=1,
        terminated=False,
        length=2,
        returns=torch.tensor([1.0, 1.0]),
        pointed=pointed,
        example={"image": torch.full((1, 8, 8), 100, dtype=torch.uint8)},
        strata={"class": 7},
        item_shape=(2, 2),
    )
    figure = ImageClassificationScenario().episode_figure(
        episode, ("prover", "verifier"), ("main",)
    )
    (ax,) = figure.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["r0: verifier", "r1: prover"]
    assert ax.images[0].get_array().shape == (128, 256, 3)
    assert "class 7" in figure._suptitle.get_text()


# -- the command ----------------------------------------------------------------------------


def nip(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_visualise_writes_pictures_page_and_summary(trained_run, tmp_path):
    from nip.visualise import main

    out = tmp_path / "pictures"
    main([f"checkpoint={trained_run}", "num_episodes=3", f"output={out}"])
    summary = json.loads((out / "episodes.json").read_text())
    rows = summary["episodes"]
    assert [r["datapoint_id"] for r in rows] == [0, 1, 2]  # the test split, in order
    assert summary["dataset"] == "split=test" and summary["num_played"] == 3
    for row in rows:
        png = (out / row["picture"]).read_bytes()
        assert png.startswith(b"\x89PNG")
        assert row["transcript"][0].startswith("round 0: verifier -> ")
        assert len(row["transcript"]) == row["length"]  # one speaker per NIP round
        assert row["label"] in ("isomorphic", "non_isomorphic")
    page = (out / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    # Seeded: the same command draws the same episodes.
    again = tmp_path / "again"
    main([f"checkpoint={trained_run}", "num_episodes=3", f"output={again}"])
    assert json.loads((again / "episodes.json").read_text())["episodes"] == rows


@pytest.mark.parametrize("only", ["wrong", "right", "accepted", "rejected"])
def test_visualise_filters_by_outcome(trained_run, tmp_path, only):
    from nip.visualise import main

    out = tmp_path / only
    try:
        main([f"checkpoint={trained_run}", "num_episodes=4", f"only={only}", f"output={out}"])
    except SystemExit as e:  # no such episode among the 50: one line, nothing written
        assert e.code == 2 and not out.exists()
        return
    rows = json.loads((out / "episodes.json").read_text())["episodes"]
    assert 1 <= len(rows) <= 4
    keep = {
        "wrong": lambda r: not r["right"],
        "right": lambda r: r["right"],
        "accepted": lambda r: r["decision"] == "accept",
        "rejected": lambda r: r["decision"] == "reject",
    }[only]
    assert all(keep(r) for r in rows)


def test_visualise_default_output_is_in_the_run_directory(trained_run):
    result = nip("nip.visualise", f"checkpoint={trained_run}", "num_episodes=1", "greedy=true")
    assert result.returncode == 0, result.stderr
    assert "1 episode pictures and index.html written to" in result.stdout
    assert (trained_run / "visualisations" / "index.html").is_file()


def bad_inputs(run: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "empty_run").mkdir()
    not_pairs = tmp / "images.pt"
    torch.save({"images": torch.zeros(3, 1, 8, 8, dtype=torch.uint8)}, not_pairs)
    (tmp / "a_file").write_text("x")
    return {
        "no checkpoint": ([f"checkpoint={tmp / 'empty_run'}"], "no checkpoint found"),
        "other scenario's file": ([f"checkpoint={run}", f"dataset.path={not_pairs}"], "images.pt"),
        "no episodes": ([f"checkpoint={run}", "num_episodes=0"], "num_episodes must be at least 1"),
        "unwritable output": (
            [f"checkpoint={run}", f"output={tmp / 'a_file' / 'pictures'}"],
            "cannot write there",
        ),
        "unknown filter": ([f"checkpoint={run}", "only=sometimes"], "choose one of wrong, right"),
        "unknown key": ([f"checkpoint={run}", "num_episode=3"], "num_episode"),
    }


def test_visualise_bad_input_is_one_line_and_writes_nothing(trained_run, tmp_path, capsys):
    from nip.visualise import main

    before = sorted(p.relative_to(trained_run) for p in trained_run.rglob("*"))
    for case, (args, message) in bad_inputs(trained_run, tmp_path).items():
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "num_episodes=2"] if "num_episodes" not in str(args) else args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, case
        assert err.startswith("nip: error: ") and err.count("\n") == 1, (case, err)
        assert message in err, (case, err)
    assert sorted(p.relative_to(trained_run) for p in trained_run.rglob("*")) == before
    assert not (tmp_path / "a_file" / "pictures").exists()
