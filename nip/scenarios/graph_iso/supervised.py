"""The solo head of graph isomorphism: a pair classified by an agent's body alone.

Solo training and pretraining (:mod:`nip.trainers.supervised`) ask a body what it makes of a
pair before any message is exchanged (see ``Scenario.supervised_view``) and put this head on
its two graph representations.
"""

from torch import Tensor, nn

from nip.utils.nn import mlp, orthogonal_init_


class SoloHead(nn.Module):
    """Graph-level MLP from both graph representations to reject/accept logits."""

    def __init__(self, d_representation: int, d_hidden: int, activation: str):
        super().__init__()
        self.net = mlp(2 * d_representation, d_hidden, 2, 2, activation)
        orthogonal_init_(self)

    def forward(self, graph_repr: Tensor) -> Tensor:
        """``[*B, 2, d] -> [*B, 2]``."""
        return self.net(graph_repr.flatten(-2))
