"""Schema of the ``schedule`` config group: which agents update in which iterations.

The rule that reads a schedule lives here too: being a function of the iteration number
alone, a schedule needs no state of its own, so a resumed run picks up exactly where the
interrupted one was in its cycle.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from nip.errors import NipConfigError


@dataclass
class ConstantScheduleConfig:
    """Every learning agent updates in every iteration (``schedule=constant``)."""

    name: str = "constant"


@dataclass
class PeriodicScheduleConfig:
    """Agents update in a window of a repeating period (``schedule=periodic``).

    Attributes
    ----------
    period : int
        Length of the repeating cycle, in iterations.
    windows : dict of str to [start, stop]
        Agent name -> the iterations ``start <= t mod period < stop`` in which it updates;
        agents not listed update in every iteration. E.g. ``period=10`` with
        ``windows={verifier: [0, 5], prover: [5, 10]}`` alternates blocks of five.
    """

    name: str = "periodic"
    period: int = 2
    windows: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class AlternatingScheduleConfig:
    """The verifier's side and the provers take turns (``schedule=alternating``).

    In each cycle of ``period`` iterations the non-prover agents (the verifier; under zero
    knowledge also the adversarial verifier and the simulator) update in the first
    ``verifier_iterations`` and the provers in the rest, or the other way round with
    ``verifier_first=false``.

    Attributes
    ----------
    period : int
        Length of one cycle, in iterations.
    verifier_iterations : int
        Iterations of each cycle in which the verifier's side updates.
    verifier_first : bool
        The verifier's side updates at the start of each cycle (else the provers do).
    """

    name: str = "alternating"
    period: int = 2
    verifier_iterations: int = 1
    verifier_first: bool = True


def agents_updating(
    schedule: ConstantScheduleConfig | PeriodicScheduleConfig | AlternatingScheduleConfig,
    agent_names: Sequence[str],
    prover_names: Sequence[str],
    iteration: int,
) -> tuple[bool, ...]:
    """Whether each agent's parameters are updated in ``iteration`` (before ``frozen``/``random``).

    Parameters
    ----------
    schedule
        The ``schedule`` config.
    agent_names : sequence of str
        The protocol's agents, in agent-dimension order.
    prover_names : sequence of str
        Which of them are provers (for ``alternating``).
    iteration : int
        Zero-based training iteration.
    """
    if schedule.name == "constant":
        return tuple(True for _ in agent_names)
    phase = iteration % schedule.period
    if schedule.name == "periodic":
        return tuple(
            name not in schedule.windows
            or schedule.windows[name][0] <= phase < schedule.windows[name][1]
            for name in agent_names
        )
    if schedule.name == "alternating":
        k = schedule.verifier_iterations
        verifier_turn = phase < k if schedule.verifier_first else phase >= schedule.period - k
        return tuple((name in prover_names) != verifier_turn for name in agent_names)
    raise NipConfigError(f"unknown schedule {schedule.name!r}: constant, periodic or alternating")


def check_schedule(
    schedule,
    agent_names: Sequence[str],
    prover_names: Sequence[str],
    learning: Sequence[bool],
) -> None:
    """Refuse a schedule that names unknown agents, has empty windows, or leaves an iteration
    in which no learning agent updates (one line each).

    Raises
    ------
    NipConfigError
    """
    if schedule.name == "constant":
        return
    if schedule.name not in ("periodic", "alternating"):
        raise NipConfigError(
            f"unknown schedule {schedule.name!r}: constant, periodic or alternating"
        )
    if schedule.period < 1:
        raise NipConfigError(f"schedule.period must be at least 1, got {schedule.period}")
    if schedule.name == "periodic":
        for name, window in schedule.windows.items():
            if name not in agent_names:
                raise NipConfigError(
                    f"schedule.windows names {name!r}, not an agent of this protocol "
                    f"({', '.join(agent_names)})"
                )
            if len(window) != 2 or not 0 <= window[0] < window[1] <= schedule.period:
                raise NipConfigError(
                    f"schedule.windows.{name} must be [start, stop] with "
                    f"0 <= start < stop <= period ({schedule.period}), got {list(window)}"
                )
    else:
        k = schedule.verifier_iterations
        if not 0 < k < schedule.period:
            raise NipConfigError(
                f"schedule.verifier_iterations must be between 1 and period - 1 "
                f"({schedule.period - 1}), got {k}"
            )
    for phase in range(schedule.period):
        updating = agents_updating(schedule, agent_names, prover_names, phase)
        if not any(u and learn for u, learn in zip(updating, learning, strict=True)):
            raise NipConfigError(
                f"in iteration {phase} of each cycle of the schedule no learning agent updates "
                f"(schedule={schedule.name}; frozen and random agents never do)"
            )
