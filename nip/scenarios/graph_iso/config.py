"""Schema of ``conf/scenario/graph_iso.yaml`` (the GI scenario and its agents)."""

from dataclasses import dataclass, field

from nip.config.agent import AgentConfig, LrFactors
from nip.errors import require


@dataclass
class GraphIsoAgentConfig(AgentConfig):
    """Architecture of one graph-isomorphism agent (a GIN + transformer body and MLP heads).

    Beyond :class:`~nip.config.agent.AgentConfig`: the body's sizes, and ``gnn_lr_factor``,
    which further multiplies the learning rate of the GNN part of the body.

    Attributes
    ----------
    num_gnn_layers : int
        GIN layers of the body's graph network.
    d_gnn : int
        Width of the node features in the graph network.
    d_gin_mlp : int
        Hidden width of each GIN layer's MLP.
    use_dual_gnn : bool
        Add a second stream to the graph network that sees only the graph structure (all-zero
        message features).
    num_heads : int
        Attention heads of the transformer (must divide ``d_transformer``).
    num_transformer_layers : int
        Transformer layers over the two pooled graph tokens and every node (0: none).
    d_transformer : int
        Width of the transformer's tokens.
    d_transformer_mlp : int
        Hidden width of each transformer layer's MLP.
    d_node_selector, num_node_selector_layers : int
        The MLP giving each node its message logits (width, layers).
    use_pair_invariant_pooling : bool
        Pool the two graphs into tokens that do not depend on the order of the pair (their
        mean and absolute difference) instead of one token per graph.
    gnn_lr_factor : LrFactors
        Multiplies the learning rate of the graph network further.
    """

    num_gnn_layers: int = 5
    d_gnn: int = 16
    d_gin_mlp: int = 64
    use_dual_gnn: bool = False
    num_heads: int = 4
    num_transformer_layers: int = 1
    d_transformer: int = 16
    d_transformer_mlp: int = 64
    d_node_selector: int = 16
    num_node_selector_layers: int = 2
    use_pair_invariant_pooling: bool = True
    gnn_lr_factor: LrFactors = field(default_factory=LrFactors)

    SIZE_FIELDS = (
        *AgentConfig.SIZE_FIELDS,
        "num_gnn_layers",
        "d_gnn",
        "d_gin_mlp",
        "num_heads",
        "d_transformer",
        "d_transformer_mlp",
        "d_node_selector",
        "num_node_selector_layers",
    )
    LR_FACTOR_FIELDS = (*AgentConfig.LR_FACTOR_FIELDS, "gnn_lr_factor")

    def check(self, role: str, shared_body: bool) -> None:  # noqa: D102
        super().check(role, shared_body)
        require(
            self.num_transformer_layers >= 0,
            f"scenario.{role}.num_transformer_layers must be >= 0",
        )
        require(
            self.d_transformer % self.num_heads == 0,
            f"scenario.{role}.d_transformer ({self.d_transformer}) is not divisible by "
            f"num_heads ({self.num_heads})",
        )


@dataclass
class GraphIsoScenarioConfig:
    """Graph isomorphism (``scenario=graph_iso``): data and agent architectures.

    Attributes
    ----------
    num_train_pairs, num_test_pairs : int
        Sizes of the generated datasets (ignored for a split read from a file).
    dataset_path, test_dataset_path : str or None
        Read that split from a file (our format or the original code's) instead of
        generating it.
    data_seed : int
        Seed of dataset generation. Separate from the experiment ``seed`` so that runs over
        several seeds share their data, as in the paper.
    graph_sizes, edge_probabilities : list
        Erdos-Renyi configurations, sampled in equal numbers.
    wl_iterations : int
        Weisfeiler-Lehman refinement rounds used to score non-isomorphic pairs.
    prop_non_isomorphic : float
        Fraction of non-isomorphic pairs.
    non_iso_prop_score_1, non_iso_prop_score_2 : float
        Fractions of the non-isomorphic pairs that WL separates after 1 and 2 rounds.
    iso_prop_from_non_iso : float
        Fraction of the isomorphic pairs built from a member of a non-isomorphic pair.
    d_representation : int
        Width of the graph- and node-level representations the bodies output.
    message_size : int
        Simultaneous messages (positions) per channel per round.
    prover, verifier : GraphIsoAgentConfig
        Architectures of prover agents (every agent named ``prover*``) and of verifiers.
    """

    name: str = "graph_iso"
    num_train_pairs: int = 10000
    num_test_pairs: int = 1000
    dataset_path: str | None = None
    test_dataset_path: str | None = None
    data_seed: int = 0
    graph_sizes: list[int] = field(default_factory=lambda: [7, 8, 9, 10, 11])
    edge_probabilities: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    wl_iterations: int = 5
    prop_non_isomorphic: float = 0.5
    non_iso_prop_score_1: float = 0.1
    non_iso_prop_score_2: float = 0.2
    iso_prop_from_non_iso: float = 0.5
    d_representation: int = 16
    message_size: int = 1
    prover: GraphIsoAgentConfig = field(default_factory=lambda: GraphIsoAgentConfig())
    verifier: GraphIsoAgentConfig = field(
        default_factory=lambda: GraphIsoAgentConfig(num_gnn_layers=2)
    )
