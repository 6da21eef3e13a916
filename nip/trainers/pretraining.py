"""Supervised pretraining of the agents' policy bodies, cached by hyper-parameters."""

import hashlib
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nip.checkpointing import atomic_torch_save
from nip.config.root import agent_is_fixed
from nip.config.scenario import GraphIsoScenarioConfig
from nip.scenarios.graph_iso.agents import CombinedPolicy, agent_config
from nip.scenarios.graph_iso.dataset import GraphPairDataset
from nip.utils.nn import mlp, orthogonal_init_
from nip.utils.seeding import derive_seed

log = logging.getLogger("nip")


class SoloHead(nn.Module):
    """Graph-level MLP from both graph representations to reject/accept logits."""

    def __init__(self, d_representation: int, d_hidden: int, activation: str):
        super().__init__()
        self.net = mlp(2 * d_representation, d_hidden, 2, 2, activation)
        orthogonal_init_(self)

    def forward(self, graph_repr: Tensor) -> Tensor:
        """``[*B, 2, d] -> [*B, 2]``."""
        return self.net(graph_repr.flatten(-2))


def pretrain_policy_bodies(
    policy: CombinedPolicy,
    dataset: GraphPairDataset,
    scenario_cfg: GraphIsoScenarioConfig,
    *,
    observation_stats: dict[str, dict[str, Tensor]],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    cache_key: dict,
    cache_dir: Path,
) -> dict[str, dict[str, float]]:
    """Train every learning agent's policy body (with a throw-away head) to classify the pairs.

    The bodies see what they see at round 0 (no messages yet) and must tell isomorphic pairs
    from non-isomorphic ones. The whole body is trained (the original code's pretraining left
    bodies at their initialisation). Results are cached under ``cache_dir/pretrained`` by a
    hash of ``cache_key``, so repeated runs and seeds with identical settings reuse them.

    Returns
    -------
    dict
        Agent -> final epoch's ``loss`` and ``accuracy`` (empty if loaded from the cache).
    """
    key = hashlib.sha256(json.dumps(cache_key, sort_keys=True, default=str).encode()).hexdigest()
    cache_file = Path(cache_dir) / "pretrained" / f"{key[:32]}.pt"
    if cache_file.is_file():
        try:
            state = torch.load(cache_file, map_location="cpu", weights_only=True)
            for name, body_state in state.items():
                policy.bodies[name].load_state_dict(body_state)
            log.info(f"pretrained bodies loaded from {cache_file}")
            return {}
        except Exception as e:  # a corrupt cache entry is recomputed
            log.warning(f"ignoring unreadable pretraining cache {cache_file}: {e}")

    device = next(policy.parameters()).device
    adjacency = dataset.adjacency.to(device)
    node_mask = dataset.node_mask.to(device)
    y = dataset.y.to(device)
    t = policy.protocol_handler.max_message_rounds
    c = policy.protocol_handler.num_channels
    p, n = policy.message_size, policy.max_nodes

    def normalised_zeros(key: str, shape: tuple[int, ...]) -> Tensor:
        zeros = torch.zeros(shape, device=device)
        if key not in observation_stats:
            return zeros
        stats = observation_stats[key]
        return (zeros - stats["loc"].to(device)) / stats["scale"].to(device)

    results = {}
    generator = torch.Generator().manual_seed(derive_seed(seed, "pretrain_order"))
    for a, name in enumerate(policy.agent_names):
        if agent_is_fixed(agent_config(policy.protocol_handler, scenario_cfg, name)):
            continue  # frozen agents keep their parameters; random ones have none
        body = policy.bodies[name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, name, "solo_head"))
            cfg = agent_config(policy.protocol_handler, scenario_cfg, name)
            head = SoloHead(scenario_cfg.d_representation, cfg.d_decider, cfg.activation)
            head = head.to(device)
        optimizer = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=lr, eps=1e-5)
        for _ in range(epochs):
            order = torch.randperm(len(dataset), generator=generator).to(device)
            total_loss, total_correct = 0.0, 0
            for start in range(0, len(dataset), batch_size):
                idx = order[start : start + batch_size]
                b = len(idx)
                x = normalised_zeros("x", (b, t, c, p, 2, n))
                message = normalised_zeros("message", (b, c, p, 2, n))
                graph_repr, _ = policy._run_body(
                    a,
                    x,
                    message,
                    adjacency[idx],
                    node_mask[idx],
                    torch.zeros(b, dtype=torch.long, device=device),
                    need_nodes=False,
                )
                logits = head(graph_repr)
                loss = F.cross_entropy(logits, y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * b
                total_correct += (logits.argmax(-1) == y[idx]).sum().item()
            results[name] = {
                "loss": total_loss / len(dataset),
                "accuracy": total_correct / len(dataset),
            }
        log.info(
            f"pretrained {name}: loss {results[name]['loss']:.4f}, "
            f"accuracy {results[name]['accuracy']:.3f}"
        )
    state = {name: policy.bodies[name].state_dict() for name in results}
    atomic_torch_save(state, cache_file)
    return results
