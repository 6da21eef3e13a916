"""Schema of the ``schedule`` config group: which agents update in which iterations."""

from dataclasses import dataclass, field


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
    """

    name: str = "alternating"
    period: int = 2
    verifier_iterations: int = 1
    verifier_first: bool = True
