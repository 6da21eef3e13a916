"""The end-of-run plot: accuracy and per-agent reward against iteration."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # runs on clusters without a display
import matplotlib.pyplot as plt  # noqa: E402


def plot_metrics(metrics_path: Path, out_path: Path, agent_names: tuple[str, ...]) -> Path | None:
    """Plot train (and final test) accuracy and each agent's mean episode reward.

    Parameters
    ----------
    metrics_path : Path
        The run's ``metrics.jsonl``.
    out_path : Path
        Where to write the PNG.
    agent_names : tuple of str
        Agents whose rewards to plot.

    Returns
    -------
    Path or None
        ``out_path``, or ``None`` if there were no training iterations to plot.
    """
    rows = []
    for line in Path(metrics_path).read_text().splitlines() if Path(metrics_path).exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    train = [r for r in rows if "mean_accuracy" in r]
    test = [r for r in rows if "test_mean_accuracy" in r]
    if not train:
        return None
    iterations = [r["iteration"] for r in train]
    fig, (ax_acc, ax_rew) = plt.subplots(1, 2, figsize=(11, 4))
    ax_acc.plot(iterations, [r["mean_accuracy"] for r in train], label="train")
    for r in test:
        ax_acc.scatter([r["iteration"]], [r["test_mean_accuracy"]], color="C3", zorder=3)
    if test:
        ax_acc.scatter([], [], color="C3", label="test")
    ax_acc.set(xlabel="iteration", ylabel="verifier accuracy", ylim=(0, 1), title="Accuracy")
    ax_acc.legend()
    for i, agent in enumerate(agent_names):
        key = f"{agent}.mean_episode_reward"
        ax_rew.plot(iterations, [r.get(key) for r in train], label=agent, color=f"C{i}")
    ax_rew.set(xlabel="iteration", ylabel="mean episode reward", title="Reward per agent")
    ax_rew.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path
