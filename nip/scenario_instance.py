"""Everything built from the hyper-parameters before training starts."""

from dataclasses import dataclass
from typing import Any

from torch import nn
from torchrl.envs import EnvBase

from nip.protocols.base import ProtocolHandler
from nip.scenarios.base import Scenario


@dataclass
class ScenarioInstance:
    """Datasets, protocol, environments and the combined agents of one experiment.

    Attributes
    ----------
    scenario : Scenario
        The scenario (``scenario.name``) that built the rest.
    train_dataset, test_dataset : Any
        The scenario's datasets.
    protocol_handler : ProtocolHandler
        The interaction protocol's rules.
    train_environment : EnvBase or None
        ``frames_per_batch // steps_per_env`` parallel episodes over the training data
        (``None`` for trainers that play no episodes).
    test_environment : EnvBase or None
        Episodes over the test data, served in order.
    combined_policy : nn.Module
        All agents' policy networks as one module with an agent dimension.
    combined_value : nn.Module
        All agents' value networks as one module with an agent dimension.
    """

    scenario: Scenario
    train_dataset: Any
    test_dataset: Any
    protocol_handler: ProtocolHandler
    train_environment: EnvBase | None
    test_environment: EnvBase | None
    combined_policy: nn.Module
    combined_value: nn.Module
