"""Pictures of GI episodes: both graphs, and the nodes each agent pointed at in each round."""

import math

import networkx as nx
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle

from nip.episodes import SILENT, Episode, agent_colours

# Radius of a node's disc and spacing of the rings around it, in layout units (the layout
# fills about [-1, 1]).
NODE_RADIUS = 0.075
RING_SPACING = 0.035
# Every graph is laid out with this seed: the same graph is always drawn the same way.
LAYOUT_SEED = 0


def graph_layout(adjacency: np.ndarray, num_nodes: int) -> np.ndarray:
    """Node positions ``[num_nodes, 2]`` of a graph, within ``[-1, 1]``.

    Each connected component gets a seeded spring layout of its own, sized by its number of
    nodes, and the components stand side by side (largest first, isolated nodes last): a
    spring layout of the whole graph pushes components and isolated nodes far apart and
    squeezes each component's nodes together.
    """
    graph = nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    graph.add_edges_from(
        zip(*np.nonzero(np.triu(adjacency[:num_nodes, :num_nodes], 1)), strict=True)
    )
    components = sorted(nx.connected_components(graph), key=lambda c: (-len(c), min(c)))
    xy = np.zeros((num_nodes, 2))
    left = 0.0
    for component in components:
        nodes = sorted(component)
        radius = math.sqrt(len(nodes)) / 2
        if len(nodes) > 1:
            positions = nx.spring_layout(graph.subgraph(nodes), seed=LAYOUT_SEED, scale=radius)
            for node in nodes:
                xy[node] = positions[node] + (left + radius, 0.0)
        else:
            xy[nodes[0]] = (left + radius, 0.0)
        left += 2 * radius + 0.3
    xy -= (xy.max(0) + xy.min(0)) / 2
    span = np.abs(xy).max()
    return xy / span if span > 0 else xy


def pointed_nodes(episode: Episode) -> list[tuple[int, int, int, int, int]]:
    """``(round, agent, channel, graph, node)`` for every item an agent pointed at, in order."""
    num_nodes = episode.item_shape[1]
    spoke = episode.pointed != SILENT
    items = episode.pointed[spoke].tolist()
    choices = {
        (r, a, c, item // num_nodes, item % num_nodes)
        for (r, a, c, _), item in zip(spoke.nonzero().tolist(), items, strict=True)
    }
    return sorted(choices)


def episode_figure(
    episode: Episode,
    agent_names: tuple[str, ...],
    channel_names: tuple[str, ...],
    label_names: tuple[str, str],
) -> Figure:
    """Graphs A and B side by side; every node an agent pointed at is ringed in the agent's
    colour and tagged with the round (``r2``; ``r2 c1`` when the protocol has several
    channels). Each ring's ``gid`` is ``pointed|<agent>|<round>|<channel>|<graph>|<node>``.
    """
    adjacency = episode.example["adjacency"].cpu().numpy()
    node_mask = episode.example["node_mask"].cpu().numpy()
    colours = agent_colours(agent_names)
    figure = Figure(figsize=(11, 5.8))
    axes = figure.subplots(1, 2)
    layouts = []
    for g, ax in enumerate(axes):
        n = int(node_mask[g].sum())
        xy = graph_layout(adjacency[g], n)
        layouts.append(xy)
        for i, j in zip(*np.nonzero(np.triu(adjacency[g][:n, :n], 1)), strict=True):
            ax.plot(*xy[[i, j]].T, color="0.6", linewidth=1.2, zorder=1)
        for node in range(n):
            ax.add_patch(
                Circle(xy[node], NODE_RADIUS, facecolor="white", edgecolor="0.2", zorder=2)
            )
            ax.text(*xy[node], str(node), ha="center", va="center", fontsize=8, zorder=3)
        ax.set_title(f"graph {'AB'[g]} ({n} nodes)")
        ax.set_aspect("equal")
        ax.set_xlim(-1.35, 1.35)
        ax.set_ylim(-1.35, 1.35)
        ax.axis("off")
    rings: dict[tuple[int, int], int] = {}
    for r, a, c, g, node in pointed_nodes(episode):
        k = rings.get((g, node), 0)
        rings[(g, node)] = k + 1
        centre = layouts[g][node]
        ring = Circle(
            centre,
            NODE_RADIUS + RING_SPACING * (k + 1),
            fill=False,
            edgecolor=colours[agent_names[a]],
            linewidth=2.2,
            zorder=4,
        )
        ring.set_gid(f"pointed|{agent_names[a]}|{r}|{c}|{g}|{node}")
        axes[g].add_patch(ring)
        # Tags of successive choices of one node fan out around it.
        angle = math.pi / 4 + k * math.pi / 3
        offset = (NODE_RADIUS + RING_SPACING * (k + 1) + 0.07) * np.array(
            [math.cos(angle), math.sin(angle)]
        )
        tag = f"r{r}" if len(channel_names) == 1 else f"r{r} c{c}"
        axes[g].text(
            *(centre + offset),
            tag,
            color=colours[agent_names[a]],
            fontsize=8,
            fontweight="bold",
            ha="center",
            va="center",
            zorder=5,
        )
    handles = [Line2D([], [], color=colours[a], linewidth=3, label=a) for a in agent_names]
    legend = "agents"
    if len(channel_names) > 1:
        legend += " (channels: " + ", ".join(f"c{i} {n}" for i, n in enumerate(channel_names))
        legend += ")"
    figure.legend(
        handles=handles, loc="lower center", ncol=len(agent_names), title=legend, frameon=False
    )
    figure.suptitle(episode.title(label_names, agent_names), fontsize=10)
    figure.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.14, wspace=0.05)
    return figure
