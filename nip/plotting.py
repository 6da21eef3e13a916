"""The end-of-run plot: accuracy against chance, how episodes end, per-agent reward."""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # runs on clusters without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nip.metrics import MetricsFile  # noqa: E402
from nip.stats import chance_accuracy  # noqa: E402

# Shares live in [0, 1]; the margin keeps curves at exactly 0 or 1 visible.
SHARE_LIMITS = (-0.03, 1.03)


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """Iterations and values of ``key`` over the rows that have it (null values skipped)."""
    points = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _chance(rows: list[dict], key: str) -> float | None:
    """Accuracy of always giving the majority answer, from the rows' label shares."""
    shares = [r[key] for r in rows if r.get(key) is not None]
    return chance_accuracy(sum(shares) / len(shares)) if shares else None


def metrics_figure(metrics_path: Path, agent_names: tuple[str, ...], share: str) -> Figure | None:
    """The figure of a run's ``metrics.jsonl``, or ``None`` before the first iteration.

    ``share`` names the statistic of the label-1 share (the scenario's, see
    :func:`nip.stats.share_key`), from which chance is drawn.

    Left: the verifier's train accuracy, the test accuracy (tests during training and the
    final one, plotted at the number of completed iterations) and chance, the accuracy of
    always giving the majority answer (per split when their label shares differ). Middle: the share of episodes that ran out of rounds
    and the share the verifier accepted. Right: each agent's mean episode return.
    """
    # A plot shows what it can: damaged lines are skipped, not an error.
    rows = MetricsFile(metrics_path).read(skip_damaged=True)
    train = [r for r in rows if "mean_accuracy" in r]
    test = [r for r in rows if "test_mean_accuracy" in r]
    if not train:
        return None
    fig, (ax_acc, ax_end, ax_rew) = plt.subplots(1, 3, figsize=(15, 4))
    ax_acc.plot(*_series(train, "mean_accuracy"), label="train", color="C0")
    if test:
        ax_acc.plot(*_series(test, "test_mean_accuracy"), "o-", label="test", color="C3")
    # Chance differs between the splits when their label shares do (small test sets).
    train_chance = _chance(train, share)
    test_chance = _chance(test, f"test_{share}")
    if None not in (train_chance, test_chance) and abs(train_chance - test_chance) >= 0.01:
        ax_acc.axhline(train_chance, ls="--", color="gray", label="chance (train)")
        ax_acc.axhline(test_chance, ls=":", color="gray", label="chance (test)")
    elif train_chance is not None or test_chance is not None:
        level = train_chance if train_chance is not None else test_chance
        ax_acc.axhline(level, ls="--", color="gray", label="chance")
    ax_acc.set(xlabel="iteration", ylabel="verifier accuracy", ylim=SHARE_LIMITS, title="Accuracy")
    ax_acc.legend()

    ax_end.plot(*_series(train, "terminated_fraction"), label="ran out of rounds", color="C1")
    ax_end.plot(*_series(train, "accept_fraction"), label="accepted", color="C2")
    if test:
        ax_end.plot(
            *_series(test, "test_terminated_fraction"),
            "o--",
            color="C1",
            label="ran out of rounds (test)",
        )
    ax_end.set(xlabel="iteration", ylabel="share of episodes", ylim=SHARE_LIMITS, title="Outcomes")
    ax_end.legend()

    for i, agent in enumerate(agent_names):
        ax_rew.plot(*_series(train, f"{agent}.mean_episode_reward"), label=agent, color=f"C{i}")
    ax_rew.set(xlabel="iteration", ylabel="mean episode return", title="Return per agent")
    ax_rew.legend()
    fig.tight_layout()
    return fig


def diagnostics_figure(metrics_path: Path, agent_names: tuple[str, ...]) -> Figure | None:
    """How decided the agents are, or ``None`` before the first iteration.

    Left: each agent's mean normalised entropy of its messages (1: uniform over the items
    it could point at, 0: always the same one). Middle: the same for the verifier's
    decisions. Right: the mean episode length in rounds, in training and in tests.
    """
    rows = MetricsFile(metrics_path).read(skip_damaged=True)
    train = [r for r in rows if "mean_accuracy" in r]
    if not train:
        return None
    test = [r for r in rows if "test_mean_episode_length" in r]
    fig, (ax_msg, ax_dec, ax_len) = plt.subplots(1, 3, figsize=(15, 4))
    for ax, stat in ((ax_msg, "message"), (ax_dec, "decision")):
        for i, agent in enumerate(agent_names):
            x, y = _series(train, f"{agent}.mean_{stat}_entropy")
            if x:  # only agents that take such actions
                ax.plot(x, y, label=agent, color=f"C{i}")
        ax.set(
            xlabel="iteration",
            ylabel="normalised entropy",
            ylim=SHARE_LIMITS,
            title=f"{stat.capitalize()} entropy (1: uniform)",
        )
        if ax.lines:
            ax.legend()
    ax_len.plot(*_series(train, "mean_episode_length"), label="train", color="C0")
    if test:
        ax_len.plot(*_series(test, "test_mean_episode_length"), "o-", label="test", color="C3")
    ax_len.set(xlabel="iteration", ylabel="rounds", title="Episode length")
    ax_len.legend()
    fig.tight_layout()
    return fig


def solo_metrics_figure(
    metrics_path: Path, agent_names: tuple[str, ...], share: str
) -> Figure | None:
    """The figure of a solo-agent run's ``metrics.jsonl``, or ``None`` before the first epoch.

    Left: each agent's accuracy on the epoch's training batches (solid), on the held-out
    part after the epoch (dashed) and on the test split at the end (marker), with chance on
    the held-out part. Right: the same agents' cross-entropy losses.
    """
    rows = MetricsFile(metrics_path).read(skip_damaged=True)
    epochs = [r for r in rows if "epoch" in r]
    if not epochs:
        return None
    test = [r for r in rows if f"test_{share}" in r]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for i, agent in enumerate(agent_names):
        colour = f"C{i}"
        for ax, stat in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            x, y = _series(epochs, f"{agent}.{stat}")
            if not x:
                continue  # an agent that is not trained (frozen or random)
            ax.plot(x, y, "-", color=colour, label=f"{agent} (train)")
            ax.plot(*_series(epochs, f"{agent}.heldout_{stat}"), "--", color=colour)
            if test:
                ax.plot(*_series(test, f"{agent}.test_{stat}"), "o", color=colour)
    chance = _chance(epochs, f"heldout_{share}") or _chance(epochs, share)
    if chance is not None:
        ax_acc.axhline(chance, ls=":", color="gray", label="chance")
    ax_acc.set(
        xlabel="epoch",
        ylabel="accuracy",
        ylim=SHARE_LIMITS,
        title="Solo accuracy (dashed: held out; dots: test)",
    )
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Solo loss")
    ax_acc.legend()
    fig.tight_layout()
    return fig


def plot_solo_metrics(
    metrics_path: Path, out_path: Path, agent_names: tuple[str, ...], share: str
) -> Path | None:
    """Write :func:`solo_metrics_figure` as a PNG (see :func:`plot_metrics`)."""
    return _save(solo_metrics_figure(metrics_path, agent_names, share), out_path)


def plot_metrics(
    metrics_path: Path, out_path: Path, agent_names: tuple[str, ...], share: str
) -> Path | None:
    """Write :func:`metrics_figure` as a PNG.

    Parameters
    ----------
    metrics_path : Path
        The run's ``metrics.jsonl``.
    out_path : Path
        Where to write the PNG.
    agent_names : tuple of str
        Agents whose returns to plot.
    share : str
        The statistic of the label-1 share (chance lines).

    Returns
    -------
    Path or None
        ``out_path``, or ``None`` if there were no training iterations to plot.
    """
    return _save(metrics_figure(metrics_path, agent_names, share), out_path)


def _save(fig: Figure | None, out_path: Path) -> Path | None:
    """Write ``fig`` as a PNG atomically (nothing for ``None``); returns the path written."""
    if fig is None:
        return None
    out_path = Path(out_path)
    # A name of this process's own: two processes never write the same temporary file.
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path
