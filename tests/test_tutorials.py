"""The tutorial "Add a protocol" (docs/tutorials/add_protocol.md), followed step by step.

The tutorial's module and YAML file are the files under ``docs/tutorials/add_protocol/``,
which the page includes verbatim; here they go into a temporary package and config
directory (never into the repository), and the new protocol is composed and trained.
"""

import importlib
import re
import shutil
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "docs" / "tutorials"
PROTOCOL_FILES = TUTORIALS / "add_protocol"


@pytest.fixture
def tutorial_protocol(tmp_path, monkeypatch):
    """Step 1: the handler module, imported from a package of its own, registers itself."""
    from nip.protocols import PROTOCOL_REGISTRY

    package = tmp_path / "tutorial_protocols"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(PROTOCOL_FILES / "chatty_nip.py", package / "chatty_nip.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "chatty_nip" not in PROTOCOL_REGISTRY
    try:
        yield importlib.import_module("tutorial_protocols.chatty_nip")
    finally:
        PROTOCOL_REGISTRY.pop("chatty_nip", None)
        for name in ("tutorial_protocols.chatty_nip", "tutorial_protocols"):
            sys.modules.pop(name, None)


@pytest.fixture
def tutorial_config_dir(tmp_path):
    """Step 2: the YAML file, in a config directory of its own (``-cd DIR``)."""
    config_dir = tmp_path / "conf"
    (config_dir / "protocol").mkdir(parents=True)
    shutil.copy(PROTOCOL_FILES / "chatty_nip.yaml", config_dir / "protocol" / "chatty_nip.yaml")
    return config_dir


def compose_hyper_params(config_dir: Path, overrides: list[str]):
    """What ``python -m nip.run -cd DIR --cfg job ...`` composes, as typed hyper-parameters."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from nip.cli import CONFIG_DIR, hydra_quoted
    from nip.config import register_configs

    register_configs()
    search_path = f"hydra.searchpath=[{hydra_quoted(f'file://{config_dir}')}]"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=[*overrides, search_path]))


def test_the_page_shows_the_tested_files():
    page = (TUTORIALS / "add_protocol.md").read_text()
    assert "```{literalinclude} add_protocol/chatty_nip.py" in page
    assert "```{literalinclude} add_protocol/chatty_nip.yaml" in page


def test_add_a_protocol_tutorial(tutorial_protocol, tutorial_config_dir, tmp_path, monkeypatch):
    from nip.config import validate_hyper_params
    from nip.protocols import PROTOCOL_REGISTRY, build_protocol_handler
    from tests.helpers import random_pairs, tiny_protocol_run, use_datasets

    assert PROTOCOL_REGISTRY["chatty_nip"] is tutorial_protocol.ChattyNipProtocolHandler

    # Step 3: `--cfg job protocol=chatty_nip` composes, and the result passes every check.
    hp = compose_hyper_params(tutorial_config_dir, ["protocol=chatty_nip"])
    validate_hyper_params(hp)
    assert (hp.protocol.name, hp.protocol.max_message_rounds) == ("chatty_nip", 8)
    handler = build_protocol_handler(hp.protocol)
    assert handler.agent_names == ("prover", "verifier")

    # ... and trains: a tiny configuration with the composed protocol settings.
    use_datasets(monkeypatch, random_pairs(80, 6), random_pairs(20, 6, 1))
    trainer, rows = tiny_protocol_run(tmp_path, hp.protocol)
    assert trainer.protocol_handler.params.name == "chatty_nip"
    assert len(rows) == 3 and "test_mean_accuracy" in rows[-1]
    for agent in ("prover", "verifier"):
        assert f"{agent}.loss_objective" in rows[0]

    # Zero knowledge wraps it, as the page says.
    zk = compose_hyper_params(
        tutorial_config_dir, ["protocol=chatty_nip", "protocol.zero_knowledge=true"]
    )
    validate_hyper_params(zk)


def test_the_tutorials_handler_check_runs(tutorial_protocol):
    """Step 4: the page's test snippet, run as it is written."""
    page = (TUTORIALS / "add_protocol.md").read_text()
    step = page[page.index("## 4. Test it") :]
    (snippet,) = re.findall(r"```python\n(.*?)```", step, flags=re.S)
    exec(compile(snippet, "add_protocol.md", "exec"), {})


# -- "Add a trainer" (docs/tutorials/add_trainer.md) -------------------------------------

TRAINER_FILES = TUTORIALS / "add_trainer"


@pytest.fixture
def tutorial_trainer(tmp_path, monkeypatch):
    """The tutorial's schema and trainer modules, imported from a package of their own, and
    the schema registered as ``nip/config/root.py`` would (``GROUP_SCHEMAS``)."""
    from hydra.core.config_store import ConfigStore

    from nip.config.root import GROUP_SCHEMAS
    from nip.trainers import TRAINER_REGISTRY

    package = tmp_path / "tutorial_trainers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("a2c_config.py", "a2c.py"):
        shutil.copy(TRAINER_FILES / name, package / name)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "a2c" not in TRAINER_REGISTRY
    try:
        config = importlib.import_module("tutorial_trainers.a2c_config")
        module = importlib.import_module("tutorial_trainers.a2c")
        monkeypatch.setitem(GROUP_SCHEMAS["trainer"], "a2c", config.A2cTrainerConfig)
        yield config, module
    finally:
        TRAINER_REGISTRY.pop("a2c", None)
        ConfigStore.instance().repo.get("trainer", {}).pop("a2c_schema.yaml", None)
        for name in ("tutorial_trainers.a2c", "tutorial_trainers.a2c_config", "tutorial_trainers"):
            sys.modules.pop(name, None)


def test_add_a_trainer_tutorial(tutorial_trainer, tmp_path, monkeypatch):
    """The A2C trainer composes, validates, and trains exactly as REINFORCE with a critic."""
    import dataclasses

    from nip.config import validate_hyper_params
    from nip.config.loss import ReinforceLossConfig
    from nip.config.trainer import ReinforceTrainerConfig
    from nip.run import run_experiment
    from tests.helpers import (
        random_pairs,
        read_metrics,
        run_settings,
        tiny_hyper_params,
        use_datasets,
    )

    config, module = tutorial_trainer
    config_dir = tmp_path / "conf"
    (config_dir / "trainer").mkdir(parents=True)
    shutil.copy(TRAINER_FILES / "a2c.yaml", config_dir / "trainer" / "a2c.yaml")
    hp = compose_hyper_params(config_dir, ["trainer=a2c"])
    validate_hyper_params(hp)
    assert type(hp.trainer) is config.A2cTrainerConfig
    assert (hp.trainer.num_epochs, hp.loss.name) == (1, "reinforce")

    use_datasets(monkeypatch, random_pairs(80, 6), random_pairs(20, 6, 1))
    tiny = tiny_hyper_params(tmp_path / "cache")
    loop = {f.name: getattr(tiny.trainer, f.name) for f in dataclasses.fields(tiny.trainer)}
    loop.pop("name")
    runs = {
        "a2c": config.A2cTrainerConfig(**loop),
        "reinforce": ReinforceTrainerConfig(**loop, use_advantage_and_critic=True),
    }
    metrics = {}
    for name, trainer_cfg in runs.items():
        run_hp = dataclasses.replace(tiny, trainer=trainer_cfg, loss=ReinforceLossConfig())
        trainer = run_experiment(run_hp, run_settings(tmp_path / name))
        assert isinstance(trainer, module.A2cTrainer) == (name == "a2c")
        metrics[name] = read_metrics(tmp_path / name)  # without timings
    assert len(metrics["a2c"]) == 3 and "test_mean_accuracy" in metrics["a2c"][-1]
    assert "verifier.loss_critic" in metrics["a2c"][0]
    assert metrics["a2c"] == metrics["reinforce"]


def test_the_scenario_tutorial_lists_the_abstract_methods():
    """docs/tutorials/add_scenario.md's table names exactly what a scenario must implement."""
    from nip.scenarios.base import Scenario

    page = (TUTORIALS / "add_scenario.md").read_text()
    table = page[page.index("<!-- abstract-methods -->") : page.index("<!-- /abstract-methods -->")]
    listed = set(re.findall(r"^\| `(\w+)\(", table, flags=re.M))
    assert listed == set(Scenario.__abstractmethods__)


def test_a_trainer_needs_only_the_loss_and_the_advantage_estimator():
    """What docs/tutorials/add_trainer.md promises a new RL trainer has to implement."""
    from nip.trainers.rl_tensordict_base import TensorDictRlTrainer

    assert set(TensorDictRlTrainer.__abstractmethods__) == {"_get_loss_module_and_gae"}
