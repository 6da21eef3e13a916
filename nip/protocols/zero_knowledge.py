"""The zero-knowledge construction around any single-verifier protocol.

Two agents join the base protocol: an *adversarial verifier*, which talks to the provers in a
copy of every channel, and a *simulator*, which must reproduce the adversarial verifier's
side of the transcript in a third copy without any prover. The simulator is rewarded for
resembling the adversarial verifier and the adversarial verifier for being unlike the
simulator; provers get a share of the simulator's reward, which pushes them to say nothing
that a simulator could not produce, i.e. to reveal no knowledge beyond the answer.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from nip.protocols.base import CONTINUE, ProtocolHandler, ProtocolStep

BLOCKS = ("standard", "adversarial", "simulator")
ADVERSARY, SIMULATOR = "adversarial_verifier", "simulator"


class ZeroKnowledgeProtocol(ProtocolHandler):
    """Wrap ``base`` (a protocol with exactly one verifier, named ``verifier``).

    Agents: the base agents, then ``adversarial_verifier`` and ``simulator``. Channels: every
    base channel in three blocks, ``<channel>_standard``, ``<channel>_adversarial``,
    ``<channel>_simulator`` (block-major). The verifier works in the standard block, the
    adversarial verifier in the adversarial block, the simulator in the simulator block, and
    the other base agents answer in both the standard and the adversarial blocks with the
    base protocol's turn order.

    Parameters
    ----------
    base : ProtocolHandler
        The protocol being made zero-knowledge.
    """

    def __init__(self, base: ProtocolHandler):
        super().__init__(base.params)
        if base.verifier_names != ("verifier",):
            raise ValueError("zero knowledge needs a protocol with a single verifier")
        self.base = base
        self.agent_names = (*base.agent_names, ADVERSARY, SIMULATOR)
        self.channel_names = tuple(f"{c}_{b}" for b in BLOCKS for c in base.channel_names)
        a0 = base.num_agents
        self._adversary, self._simulator = a0, a0 + 1

    @property
    def verifier_names(self) -> tuple[str, ...]:  # noqa: D102
        return ("verifier", ADVERSARY)

    def has_decider(self, agent_name: str) -> bool:  # noqa: D102
        # The simulator imitates the adversarial verifier, decisions included.
        return agent_name in ("verifier", ADVERSARY, SIMULATOR)

    def _block_mask(self, device: torch.device | None = None) -> Tensor:
        """bool ``[agent, 3]``: which channel blocks each agent may work in."""
        a0, v = self.base.num_agents, self.base.verifier_index
        mask = torch.zeros(a0 + 2, 3, dtype=torch.bool, device=device)
        mask[:a0, :2] = True  # base agents: standard and adversarial blocks
        mask[v] = torch.tensor([True, False, False])
        mask[self._adversary, 1] = True
        mask[self._simulator, 2] = True
        return mask

    def _extend(self, base_rows: Tensor, device: torch.device | None = None) -> Tensor:
        """``[..., A0, C0] -> [..., A0 + 2, 3 * C0]``: copy the verifier's row for the two new
        agents, repeat over the three blocks, and keep each agent to its blocks."""
        v = self.base.verifier_index
        rows = torch.cat(
            [
                base_rows,
                base_rows[..., v : v + 1, :].expand(*base_rows.shape[:-2], 2, base_rows.shape[-1]),
            ],
            dim=-2,
        )
        blocks = self._block_mask(device)  # [A, 3]
        return (rows.unsqueeze(-2) & blocks.unsqueeze(-1)).flatten(-2)

    @property
    def agent_channel_visibility(self) -> Tensor:  # noqa: D102
        return self._extend(self.base.agent_channel_visibility)

    def active_mask(self, round: Tensor, seed: Tensor) -> Tensor:  # noqa: D102
        return self._extend(self.base.active_mask(round, seed), round.device)

    def guess_mask(self, round: Tensor, seed: Tensor) -> Tensor:  # noqa: D102
        return self.base.guess_mask(round, seed)

    def decision_mask(self, round: Tensor, seed: Tensor) -> Tensor:  # noqa: D102
        mask = torch.zeros((*round.shape, self.num_agents), dtype=torch.bool, device=round.device)
        guess = self.guess_mask(round, seed) & self.decision_window(round)
        mask[..., self.base.verifier_index] = guess
        mask[..., self._adversary] = guess
        return mask

    def step(
        self,
        *,
        round: Tensor,
        seed: Tensor,
        decision: Tensor,
        y: Tensor,
        done: Tensor,
        agent_done: Tensor,
        terminated: Tensor,
        node_logits: Tensor | None = None,
        decision_logits: Tensor | None = None,
    ) -> ProtocolStep:
        """The base step for the base agents, plus the adversary's and simulator's rules.

        The episode ends when both the verifier and the adversarial verifier have finished,
        or when the rounds run out. A verifier that has decided is finished: it decides no
        more, and neither it nor the provers receive rewards through it, while the
        adversarial verifier and the simulator play on.
        The simulator's reward is ``zk_simulator_reward_coefficient`` times the sum of two
        cosine similarities with the adversarial verifier: of their message distributions
        (in rounds and channels where the adversary speaks) and of their decision
        distributions (in rounds where it may decide). Distributions rather than raw logits
        are compared because masked logits (-1e9) would dominate any raw comparison.
        """
        a0, v = self.base.num_agents, self.base.verifier_index
        adv, sim = self._adversary, self._simulator
        verifier_finished = agent_done[..., v]
        base_decision = decision[..., :a0].clone()
        base_decision[..., v] = torch.where(
            verifier_finished, torch.full_like(base_decision[..., v], CONTINUE), decision[..., v]
        )
        base = self.base.step(
            round=round,
            seed=seed,
            decision=base_decision,
            y=y,
            done=done,
            agent_done=agent_done[..., :a0],
            terminated=terminated,
        )
        base_reward = torch.where(
            verifier_finished[..., None], torch.zeros_like(base.reward), base.reward
        )
        guess = self.guess_mask(round, seed)
        adv_decided = (
            guess
            & (decision[..., adv] != CONTINUE)
            & self.decision_window(round)
            & ~agent_done[..., adv]
        )
        adv_done = adv_decided | agent_done[..., adv]
        shared_done = (base.agent_done[..., v] & adv_done) | done
        new_done = shared_done.unsqueeze(-1).expand(*shared_done.shape, self.num_agents).clone()
        new_done[..., v] = base.agent_done[..., v]
        new_done[..., adv] = adv_done

        similarity = self._similarity(round, seed, node_logits, decision_logits, guess)
        coefficient = self.params.zk_simulator_reward_coefficient
        new_agents = base_reward.new_zeros((*base_reward.shape[:-1], 2))
        reward = torch.cat([base_reward, new_agents], dim=-1)
        sim_reward = coefficient * similarity
        extra = torch.zeros_like(reward)
        extra[..., sim] = sim_reward
        extra[..., adv] = -sim_reward
        for name in self.base.prover_names:
            extra[..., self.agent_names.index(name)] = (
                self.params.zk_aux_prover_reward_coefficient * sim_reward
            )
        # The episode ran out of rounds when the last round passes without both verifiers
        # having finished (the base rule only watches the verifier, and would also flag a
        # verifier that finished earlier).
        terminated = terminated | ((round >= self.max_message_rounds - 1) & ~shared_done)
        return ProtocolStep(
            shared_done, new_done, terminated, reward + extra, base.verifier_decision
        )

    def _similarity(
        self,
        round: Tensor,
        seed: Tensor,
        node_logits: Tensor | None,
        decision_logits: Tensor | None,
        guess: Tensor,
    ) -> Tensor:
        """float ``[...]``: message plus decision cosine similarity of adversary and simulator."""
        if node_logits is None or decision_logits is None:
            return torch.zeros(round.shape, device=round.device)
        c0 = self.base.num_channels
        adv, sim = self._adversary, self._simulator
        # The adversary's activity per base channel: [..., C0].
        adv_active = self.base.active_mask(round, seed)[..., self.base.verifier_index, :]
        weight = adv_active[..., None, None].to(node_logits.dtype)  # [..., C0, 1, 1]
        msg_adv = F.softmax(node_logits[..., adv, c0 : 2 * c0, :, :], -1) * weight
        msg_sim = F.softmax(node_logits[..., sim, 2 * c0 :, :, :], -1) * weight
        message_cos = _cosine(msg_adv.flatten(-3), msg_sim.flatten(-3))
        dec_weight = guess[..., None].to(decision_logits.dtype)
        dec_adv = F.softmax(decision_logits[..., adv, :], -1) * dec_weight
        dec_sim = F.softmax(decision_logits[..., sim, :], -1) * dec_weight
        return message_cos + _cosine(dec_adv, dec_sim)


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity over the last dim; 0 where either vector is zero."""
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    dot = (a * b).sum(-1)
    return torch.where(norms > 0, dot / norms.clamp(min=1e-12), torch.zeros_like(dot))
