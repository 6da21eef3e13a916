"""Everything built from the hyper-parameters before training starts."""

from dataclasses import dataclass

from torch import nn

from nip.protocols.base import ProtocolHandler
from nip.scenarios.graph_iso.dataset import GraphPairDataset
from nip.scenarios.graph_iso.environment import GraphIsoEnvironment


@dataclass
class ScenarioInstance:
    """Datasets, protocol, environments and the combined agents of one experiment.

    Attributes
    ----------
    train_dataset, test_dataset : GraphPairDataset
        Padded to the same number of nodes.
    protocol_handler : ProtocolHandler
        The interaction protocol's rules.
    train_environment : GraphIsoEnvironment or None
        ``frames_per_batch // steps_per_env`` parallel episodes over the training pairs
        (``None`` for trainers that play no episodes).
    test_environment : GraphIsoEnvironment or None
        Episodes over the test pairs, served in order.
    combined_policy : nn.Module
        All agents' policy networks as one module with an agent dimension.
    combined_value : nn.Module
        All agents' value networks as one module with an agent dimension.
    """

    train_dataset: GraphPairDataset
    test_dataset: GraphPairDataset
    protocol_handler: ProtocolHandler
    train_environment: GraphIsoEnvironment | None
    test_environment: GraphIsoEnvironment | None
    combined_policy: nn.Module
    combined_value: nn.Module
