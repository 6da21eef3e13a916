"""Graph isomorphism behind the scenario seam (``scenario=graph_iso``)."""

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nip.config.trainer import shares_body
from nip.errors import require
from nip.protocols.base import ProtocolHandler
from nip.scenarios.base import SCENARIO_REGISTRY, Scenario
from nip.scenarios.graph_iso import agents
from nip.scenarios.graph_iso.config import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.dataset import (
    MAX_NODES,
    GraphPairDataset,
    build_datasets,
    load_pairs_file,
)
from nip.scenarios.graph_iso.environment import GraphIsoEnvironment
from nip.scenarios.graph_iso.pictures import episode_figure
from nip.scenarios.graph_iso.probe_targets import gi_probe_targets
from nip.scenarios.graph_iso.supervised import SoloHead


@SCENARIO_REGISTRY.register("graph_iso")
class GraphIsoScenario(Scenario):
    """Are two graphs isomorphic? Provers point at nodes; the verifier decides."""

    config_schema = GraphIsoScenarioConfig
    environment = GraphIsoEnvironment
    label_names = ("non_isomorphic", "isomorphic")
    policy_in_keys = ("x", "message", "message_history", "adjacency", "node_mask", "round")
    value_in_keys = ("x", "message", "adjacency", "node_mask", "round")

    def build_datasets(
        self, scenario_cfg: GraphIsoScenarioConfig, cache_dir: Path
    ) -> tuple[GraphPairDataset, GraphPairDataset]:
        """Generated (WL-stratified, cached) or read from ``dataset_path`` files."""
        return build_datasets(scenario_cfg, cache_dir)

    def load_dataset_file(self, path: Path) -> GraphPairDataset:
        """A pairs file in our format or the original code's."""
        return load_pairs_file(path)

    def strata(self, dataset: GraphPairDataset) -> dict[str, Tensor]:
        """The Weisfeiler-Lehman score of each pair (-1 for isomorphic pairs)."""
        return {"wl_score": dataset.wl_score}

    def build_agents(
        self,
        protocol_handler: ProtocolHandler,
        scenario_cfg: GraphIsoScenarioConfig,
        dataset: GraphPairDataset,
        seed: int,
        use_shared_body: bool,
    ) -> tuple[nn.Module, nn.Module]:
        """GIN + transformer bodies with node-selector, decider and value heads."""
        return agents.build_combined_agents(
            protocol_handler, scenario_cfg, dataset.max_nodes, seed, use_shared_body
        )

    def split_body(self, body: nn.Module, agent_cfg: Any, role: str) -> list:
        """The GNN (with ``gnn_lr_factor``) and the rest of the body."""
        return agents.split_gnn(body, agent_cfg, role)

    def solo_head(self, scenario_cfg: GraphIsoScenarioConfig, agent_cfg: Any) -> nn.Module:
        """An MLP from both graphs' representations to reject/accept logits."""
        return SoloHead(scenario_cfg.d_representation, agent_cfg.d_decider, agent_cfg.activation)

    def check(self, hp: Any, handler: ProtocolHandler) -> None:
        """Dataset, graph and architecture settings (one line each).

        Raises
        ------
        NipConfigError
        """
        s = hp.scenario
        require(s.num_train_pairs >= 1 and s.num_test_pairs >= 1, "dataset sizes must be positive")
        require(
            len(s.graph_sizes) > 0 and min(s.graph_sizes) >= 2, "scenario.graph_sizes: >= 2 nodes"
        )
        require(
            len(s.edge_probabilities) > 0 and all(0 < q < 1 for q in s.edge_probabilities),
            "scenario.edge_probabilities must be in (0, 1)",
        )
        require(s.message_size >= 1, "scenario.message_size must be at least 1")
        require(s.wl_iterations >= 1, "scenario.wl_iterations must be at least 1")
        require(s.d_representation >= 1, "scenario.d_representation must be at least 1")
        require(
            max(s.graph_sizes) <= MAX_NODES,
            f"scenario.graph_sizes: at most {MAX_NODES} nodes are supported, "
            f"got {max(s.graph_sizes)}",
        )
        for role in ("prover", "verifier"):
            getattr(s, role).check(role, shares_body(hp.trainer))

    def frame_bytes(self, hp: Any, handler: ProtocolHandler) -> int:
        """Message history (and its normalised copy), message, adjacency and every agent's
        message logits, in float32 / bool; small entries are ignored."""
        s, p = hp.scenario, hp.protocol
        nodes = 2 * max(s.graph_sizes)
        message = handler.num_channels * s.message_size * nodes
        floats = 2 * (2 * p.max_message_rounds * message + message) + handler.num_agents * message
        return 4 * floats + nodes * nodes  # adjacency: [2, N, N] bools, observation and next

    def model_bytes(
        self, hp: Any, handler: ProtocolHandler, batch: int, dataset: Any = None
    ) -> int:
        """Per agent, an actor and a critic body (twice the bytes of their weights,
        gradients and two Adam moments) plus the activations of a forward and backward pass
        over ``batch`` pairs with the dataset's padded size (default: the largest generated
        size): the GIN's node features, the transformer's tokens and attention maps."""
        s, p = hp.scenario, hp.protocol
        nodes = 2 * (dataset.max_nodes if dataset is not None else max(s.graph_sizes))
        tokens = nodes + 2
        total = 0
        for name in handler.agent_names:
            a = self.agent_config(handler, s, name)
            params = a.num_gnn_layers * 2 * a.d_gnn * a.d_gin_mlp
            params += a.num_transformer_layers * (
                4 * a.d_transformer**2 + 2 * a.d_transformer * a.d_transformer_mlp
            )
            params += a.d_node_selector**2 + a.d_decider**2 + a.d_value**2
            params += p.max_message_rounds * s.message_size * 3 * a.d_gnn
            activations = nodes * a.num_gnn_layers * (a.d_gnn + a.d_gin_mlp)
            activations += a.num_transformer_layers * (
                tokens * (3 * a.d_transformer + a.d_transformer_mlp) + a.num_heads * tokens**2
            )
            total += 2 * (16 * params + 4 * 2 * batch * activations)
        return total

    def describe_example(self, frame: Any) -> dict[str, str]:
        """Both graphs' edge lists (within each graph's nodes)."""
        adjacency, node_mask = frame["adjacency"], frame["node_mask"]
        edges = [
            torch.triu(adjacency[g] & node_mask[g][:, None], 1).nonzero().tolist() for g in range(2)
        ]
        return {
            "graph_a_edges": str([tuple(e) for e in edges[0]]),
            "graph_b_edges": str([tuple(e) for e in edges[1]]),
        }

    def describe_message(self, channel_messages: Tensor) -> list[str]:
        """``A3`` / ``B0``: the nodes (of graph A or B) set in a ``[P, 2, N]`` message."""
        return [
            f"{'AB'[graph]}{node}" for graph, node in channel_messages.sum(0).nonzero().tolist()
        ]

    def episode_figure(self, episode: Any, agent_names, channel_names) -> Any:
        """Both graphs side by side, the nodes each agent pointed at ringed per round."""
        return episode_figure(episode, agent_names, channel_names, self.label_names)

    def probe_targets(self, dataset, results, pointed, examples, handler) -> dict:
        """The label; whether the first exchange's nodes correspond under an isomorphism
        (``matched``); whether the prover's first node has at least median degree."""
        prover = handler.agent_names.index(handler.prover_names[0])
        return {
            **super().probe_targets(dataset, results, pointed, examples, handler),
            **gi_probe_targets(results.y, pointed, examples, handler.verifier_index, prover),
        }
