"""Image classification end to end: environment step, agents, every protocol, solo, resume."""

import dataclasses

import numpy as np
import pytest
import torch
from torchrl.envs.utils import check_env_specs

from nip.checkpointing import load_checkpoint_file
from nip.config import validate_hyper_params
from nip.config.protocol import ProtocolConfig
from nip.config.trainer import SoloAgentTrainerConfig
from nip.errors import NipConfigError
from nip.factory import build_scenario_instance, build_trainer
from nip.protocols import build_protocol_handler
from nip.run import run_experiment
from nip.scenarios import get_scenario
from nip.scenarios.image_classification.agents import (
    ImageClassificationAgentBody,
    build_combined_agents,
)
from nip.scenarios.image_classification.config import (
    ImageClassificationAgentConfig,
    ImageClassificationScenarioConfig,
)
from nip.scenarios.image_classification.dataset import ImageDataset
from nip.scenarios.image_classification.environment import ImageClassificationEnvironment
from nip.utils.nn import MASKED_LOGIT
from tests.helpers import interrupt_on_call, read_metrics, run_settings, tiny_hyper_params
from tests.test_protocol_catalogue import PROTOCOLS
from tests.test_zero_knowledge import zk


def images(n: int = 12, shape=(1, 8, 8), seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    classes = torch.arange(n) % 4
    return ImageDataset(
        torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8),
        (classes >= 2).long(),
        classes,
    )


def tiny_agent(blocks: int, block_type: str = "conv2d") -> ImageClassificationAgentConfig:
    return ImageClassificationAgentConfig(
        building_block_type=block_type,
        num_blocks_per_group=blocks,
        d_latent_pixel_selector=8,
        d_decider=8,
        d_value=8,
    )


def tiny_ic_scenario(**changes) -> ImageClassificationScenarioConfig:
    cfg = ImageClassificationScenarioConfig(
        max_train_size=120,
        initial_num_channels=4,
        d_representation=8,
        prover=tiny_agent(2),
        verifier=tiny_agent(1),
    )
    return dataclasses.replace(cfg, **changes)


def tiny_ic_hyper_params(cache, **scenario_changes):
    hp = tiny_hyper_params(cache)
    hp.scenario = tiny_ic_scenario(**scenario_changes)
    return hp


def test_environment_specs_and_latent_pixel_messages():
    handler = build_protocol_handler(ProtocolConfig())
    env = ImageClassificationEnvironment(images(), handler, 3, seed=0)
    check_env_specs(env)
    assert env.item_shape == (4, 4) and env.message_shape == (1, 1, 4, 4)
    assert ImageClassificationEnvironment(images(), handler, 1, num_block_groups=2).item_shape == (
        2,
        2,
    )
    td = env.reset()
    td["round"] = torch.tensor([0, 1, 2])
    # Prover (agent 0) points at pixel 6 = row 1, column 2; the verifier at pixel 13.
    action = torch.tensor([[6, 2], [13, 2]]).expand(3, 2, 2).clone()
    td["agents", "action"] = action
    out = env.step(td)["next"]
    # NIP with the verifier first: the verifier speaks in even rounds, the prover in odd.
    for row, (r, c) in enumerate([(3, 1), (1, 2), (3, 1)]):
        expected = torch.zeros(4, 4)
        expected[r, c] = 1
        assert torch.equal(out["message"][row, 0, 0], expected), row
        assert torch.equal(out["message_history"][row, row, 0, 0], expected)
    assert torch.equal(out["image"], td["image"])


def test_body_sees_image_history_and_message():
    cfg = tiny_agent(2)
    body = ImageClassificationAgentBody(
        cfg,
        image_shape=(3, 8, 8),
        num_block_groups=1,
        initial_num_channels=4,
        d_representation=5,
        max_message_rounds=3,
        num_visible_channels=2,
        message_size=1,
    )
    x = torch.zeros(2, 3, 2, 1, 4, 4)
    message = torch.zeros(2, 2, 1, 4, 4)
    image = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    round_ = torch.tensor([1, 1])
    image_repr, pixel_repr = body(x, message, image, round_)
    assert image_repr.shape == (2, 5) and pixel_repr.shape == (2, 4, 4, 5)
    torch.testing.assert_close(image_repr, pixel_repr.mean(dim=(1, 2)))
    assert body(x, message, image, round_, need_items=False)[1] is None
    # The history, the current message and the image each change the representation.
    marked = x.clone()
    marked[0, 0, 1, 0, 2, 3] = 1
    assert not torch.allclose(body(marked, message, image, round_)[0][0], image_repr[0])
    torch.testing.assert_close(body(marked, message, image, round_)[0][1], image_repr[1])
    said = message.clone()
    said[0, 0, 0, 1, 1] = 1
    assert not torch.allclose(body(x, said, image, round_)[0][0], image_repr[0])
    # ... but no message has been sent in round 0, whatever the input reads.
    first = torch.tensor([0, 0])
    torch.testing.assert_close(body(x, said, image, first)[0], body(x, message, image, first)[0])
    other = image.clone()
    other[0] = 255 - other[0]
    assert not torch.allclose(body(x, message, other, round_)[0][0], image_repr[0])


@pytest.mark.parametrize("block_type", ["conv2d", "residual"])
def test_combined_agents_shapes_masks_and_seeding(block_type):
    handler = build_protocol_handler(PROTOCOLS["mnip"])  # two private channels
    cfg = tiny_ic_scenario(prover=tiny_agent(2, block_type))
    policy, value = build_combined_agents(handler, cfg, (1, 8, 8), seed=3, use_shared_body=False)
    again, _ = build_combined_agents(handler, cfg, (1, 8, 8), seed=3, use_shared_body=False)
    for (k, v), (_, w) in zip(policy.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    b, t, c = 5, handler.max_message_rounds, handler.num_channels
    x = torch.zeros(b, t, c, 1, 4, 4)
    image = torch.randint(0, 256, (b, 1, 8, 8), dtype=torch.uint8)
    round_ = torch.arange(b)
    logits, decisions = policy(x, x[:, 0], x, image, round_)
    assert logits.shape == (b, 3, c, 1, 16) and decisions.shape == (b, 3, 3)
    vis = handler.agent_channel_visibility
    for a in range(3):
        for ch in range(c):
            hidden = (logits[:, a, ch] == MASKED_LOGIT).all()
            assert bool(hidden) == (not vis[a, ch]), (a, ch)
    provers = [handler.agent_names.index(n) for n in handler.prover_names]
    assert (decisions[:, provers] == 0).all()
    assert value(x, x[:, 0], image, round_).shape == (b, 3, 1)


def test_every_parameter_is_in_an_optimizer_group(tmp_path):
    hp = tiny_ic_hyper_params(tmp_path / "cache")
    s = run_settings(tmp_path / "run")
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)
    names = {g["name"] for g in trainer.optimizer.param_groups}
    assert names == {
        f"{agent}.{part}"
        for agent in ("prover", "verifier")
        for part in ("actor_body", "actor_head", "critic_body", "critic_head")
    }


PROTOCOL_CASES = {**PROTOCOLS, "zk_nip": zk("nip")}


@pytest.mark.parametrize("name", list(PROTOCOL_CASES))
def test_tiny_training_run_per_protocol(tmp_path, name):
    hp = tiny_ic_hyper_params(tmp_path / "cache")
    hp.protocol = PROTOCOL_CASES[name]
    rounds = hp.protocol.max_message_rounds
    hp.trainer.frames_per_batch = 16 * rounds
    hp.trainer.minibatch_size = 8 * rounds
    run_experiment(hp, run_settings(tmp_path / "run"))
    rows = read_metrics(tmp_path / "run")
    final = rows[-1]
    assert 0 <= final["test_mean_accuracy"] <= 1
    assert final["test_positive_fraction"] == 0.5  # merge, balanced
    assert {f"test_accuracy_class_{c}" for c in range(10)} <= set(final)
    assert "test_accuracy_positive" in final and "test_accuracy_negative" in final
    assert all("isomorphic" not in key for row in rows for key in row)


def test_solo_agent_on_images(tmp_path):
    hp = tiny_ic_hyper_params(tmp_path / "cache")
    hp.trainer = SoloAgentTrainerConfig(num_epochs=2, batch_size=32)
    run_experiment(hp, run_settings(tmp_path / "run"))
    rows = read_metrics(tmp_path / "run")
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert "verifier.heldout_accuracy_positive" in rows[0]
    assert "prover.test_accuracy_class_9" in rows[-1] and rows[-1]["test_positive_fraction"] == 0.5


def test_stop_and_resume_is_exact(tmp_path):
    cache = tmp_path / "cache"
    hp = tiny_ic_hyper_params(cache)
    hp.trainer.num_iterations = 3
    run_experiment(hp, run_settings(tmp_path / "straight"))
    expected = read_metrics(tmp_path / "straight")
    s = run_settings(tmp_path / "crashed")
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)
    interrupt_on_call(trainer, "_train_on_replay_buffer", 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert load_checkpoint_file(s.run_dir / "checkpoints" / "state.pt")["iteration"] == 1
    run_experiment(hp, s)
    assert read_metrics(tmp_path / "crashed") == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "imagenet"}, "unknown scenario.dataset 'imagenet'"),
        ({"num_block_groups": 4}, "halves the 8x8 images of digits to nothing"),
        ({"prover": tiny_agent(0)}, "scenario.prover.num_blocks_per_group must be at least 1"),
        (
            {"verifier": tiny_agent(1, "dense")},
            "scenario.verifier.building_block_type must be one of conv2d, residual, got 'dense'",
        ),
    ],
)
def test_bad_settings_are_one_line(tmp_path, changes, message):
    with pytest.raises(NipConfigError, match=message):
        validate_hyper_params(tiny_ic_hyper_params(tmp_path, **changes))


def test_label_names_and_strata():
    scenario = get_scenario("image_classification")
    assert scenario.label_names == ("negative", "positive")
    data = images()
    assert torch.equal(scenario.strata(data)["class"], data.classes)


def test_evaluate_on_the_runs_own_split(tmp_path):
    """dataset.split=test rebuilds the run's test split: a solo run's figures come back."""
    from nip.evaluate import DatasetArgs, EvaluateArgs, evaluate

    hp = tiny_ic_hyper_params(tmp_path / "cache")
    hp.trainer = SoloAgentTrainerConfig(num_epochs=1, batch_size=32)
    run_experiment(hp, run_settings(tmp_path / "solo"))
    final = read_metrics(tmp_path / "solo")[-1]
    report = evaluate(
        EvaluateArgs(checkpoint=str(tmp_path / "solo"), dataset=DatasetArgs(split="test"))
    )
    assert report["num_pairs"] == final["test_num_examples"]
    for agent in ("prover", "verifier"):
        assert report[f"{agent}.accuracy"] == final[f"{agent}.test_accuracy"]
        assert report[f"{agent}.accuracy_class_3"] == final[f"{agent}.test_accuracy_class_3"]
    assert report["chance_accuracy"] == 0.5
    assert (tmp_path / "solo" / "checkpoints" / "evaluation_split_test.json").is_file()

    hp = tiny_ic_hyper_params(tmp_path / "cache")
    run_experiment(hp, run_settings(tmp_path / "rl"))
    report = evaluate(
        EvaluateArgs(checkpoint=str(tmp_path / "rl"), dataset=DatasetArgs(split="train"))
    )
    assert report["num_pairs"] == report["num_episodes"] == 120  # max_train_size
    assert 0 <= report["mean_accuracy"] <= 1 and "accuracy_class_0" in report
    for bad in (DatasetArgs(), DatasetArgs(path="x.pt", split="test"), DatasetArgs(split="dev")):
        with pytest.raises(NipConfigError, match="dataset"):
            evaluate(EvaluateArgs(checkpoint=str(tmp_path / "rl"), dataset=bad))


def test_the_data_directory_may_move_between_run_and_resumption(tmp_path):
    from nip.config.root import science_dict

    a = tiny_ic_hyper_params(tmp_path)
    b = tiny_ic_hyper_params(tmp_path, data_dir=str(tmp_path / "elsewhere"))
    assert science_dict(a) == science_dict(b)
    assert science_dict(a) != science_dict(tiny_ic_hyper_params(tmp_path, data_seed=1))


def test_rollout_sample_image_shows_each_rounds_pixels():
    from nip.scenarios.image_classification.scenario import render_messages

    image = torch.full((1, 8, 8), 100, dtype=torch.uint8)
    history = torch.zeros(4, 1, 1, 4, 4)  # round 3 not played yet
    history[0, 0, 0, 0, 0] = 1  # round 0: latent pixel (0, 0)
    history[1, 0, 0, 2, 3] = 1  # round 1: (2, 3), image rows 4-5, columns 6-7
    history[2, 0, 0, 2, 3] = 1  # round 2: the same pixel again
    picture = render_messages(image, history)
    scale = 16
    assert picture.shape == (128, 3 * 128, 3) and picture.dtype == np.uint8
    grey, tint = [100, 100, 100], [178, 50, 50]  # half grey 100, half red
    round0, round1 = picture[:, :128], picture[:, 128:256]
    assert round0[0, 0].tolist() == tint and round0[4 * scale, 6 * scale].tolist() == grey
    assert round1[0, 0].tolist() == grey
    assert (round1[4 * scale : 6 * scale, 6 * scale :] == tint).all()
    assert round1[3 * scale, 6 * scale].tolist() == grey
    assert round1[4 * scale, 5 * scale].tolist() == grey
    assert render_messages(image, torch.zeros(4, 1, 1, 4, 4)).shape == (128, 128, 3)


def test_rollout_samples_table_shows_the_image(tmp_path, monkeypatch):
    import wandb

    from nip.rollout_samples import log_rollout_samples, sample_episodes

    hp = tiny_ic_hyper_params(tmp_path / "cache")
    s = run_settings(tmp_path / "run")
    trainer = build_trainer(hp, build_scenario_instance(hp, s), s)
    collector, _ = trainer._get_data_collectors()
    data = next(iter(collector))
    collector.shutdown()
    samples = sample_episodes(
        data, trainer.protocol_handler, trainer.scenario, 3, torch.Generator().manual_seed(0)
    )
    assert samples and all(s["label"] in ("negative", "positive") for s in samples)
    for sample in samples:  # a panel per round
        assert sample["example"]["image"].shape == (128, 128 * sample["length"], 3)
    assert "@main: (" in samples[0]["transcript"]  # pixels named (row,col)

    logged = {}

    class Run:
        def log(self, values, step):
            logged.update(values, step=step)

    log_rollout_samples(Run(), samples, 7)
    table = logged["rollout_samples"]
    assert logged["step"] == 7 and table.columns[-1] == "transcript"
    pictures = logged["rollout_samples_image"]
    assert len(pictures) == len(samples) and isinstance(pictures[0], wandb.Image)
    assert "rollout_samples_episode" not in logged  # the image panels are the picture
    assert pictures[0]._caption.startswith(f"datapoint {samples[0]['datapoint_id']}: ")


def test_shared_body_needs_equal_actor_and_critic_factors(tmp_path):
    """Checked for every scenario's agents (image agents were not checked at first)."""
    from nip.config.agent import LrFactors

    hp = tiny_ic_hyper_params(tmp_path)
    hp.trainer.use_shared_body = True
    validate_hyper_params(hp)
    hp.scenario.prover.body_lr_factor = LrFactors(actor=1.0, critic=0.5)
    with pytest.raises(
        NipConfigError, match="needs equal actor and critic lr factors for scenario.prover"
    ):
        validate_hyper_params(hp)
    hp = tiny_ic_hyper_params(
        tmp_path, verifier=dataclasses.replace(tiny_agent(1), activation="gelu")
    )
    with pytest.raises(
        NipConfigError,
        match="scenario.verifier.activation must be one of tanh, relu, sigmoid, got 'gelu'",
    ):
        validate_hyper_params(hp)
