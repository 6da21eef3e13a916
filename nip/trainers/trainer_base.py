"""Trainer base class, training state and progress bars."""

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from tqdm import tqdm


@dataclass
class TrainerState:
    """Progress of a run that survives a restart.

    Attributes
    ----------
    iteration : int
        Completed training iterations.
    tested : bool
        The final test loop ran after the last completed iteration.
    """

    iteration: int = 0
    tested: bool = False


class IterationContext:
    """A progress bar for one decorated trainer method.

    Parameters
    ----------
    total : int
        Declared number of iterations.
    enabled : bool
        Draw the bar (tqdm) or stay silent.
    description : str
        Label of the bar.
    leave : bool
        Keep the finished bar on screen.
    """

    def __init__(self, total: int, enabled: bool, description: str, leave: bool = True):
        self.bar = tqdm(
            total=total, disable=not enabled, desc=description, dynamic_ncols=True, leave=leave
        )

    def step(self, n: int = 1) -> None:
        """Advance the bar."""
        self.bar.update(n)

    def set_postfix(self, **values: Any) -> None:
        """Show values (iteration, accuracy, frames/s) beside the bar."""
        self.bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def attach_progress_bar(num_iterations: Callable[[Any], int], leave: bool = True) -> Callable:
    """Decorate a trainer method so it receives an ``iteration_context`` with a progress bar.

    ``num_iterations(trainer)`` declares how many iterations the method runs; it must be
    computable from the hyper-parameters alone, so that
    :meth:`Trainer.get_total_num_iterations` can sum the declarations before training.
    ``leave=False`` clears the bar when done (methods that run repeatedly, like tests during
    training).
    """

    def decorator(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            context = IterationContext(
                num_iterations(self), self.settings.progress_bar, method.__name__.strip("_"), leave
            )
            try:
                return method(self, *args, iteration_context=context, **kwargs)
            finally:
                context.close()

        wrapper._num_iterations_func = num_iterations  # type: ignore[attr-defined]
        return wrapper

    return decorator


class Trainer(ABC):
    """Something that trains the agents of a scenario instance.

    Parameters
    ----------
    hyper_params : HyperParameters
        The run's typed configuration.
    scenario_instance : ScenarioInstance
        Datasets, protocol, environments and agents.
    settings : ExperimentSettings
        Runtime settings (device, output directory, loggers).
    """

    trainer_type: ClassVar[str]

    def __init__(self, hyper_params, scenario_instance, settings):
        self.hyper_params = hyper_params
        self.scenario_instance = scenario_instance
        self.settings = settings
        self.state = TrainerState()

    @abstractmethod
    def train(self) -> None:
        """Run training (resuming where a checkpoint left off) and the final test."""

    def get_total_num_iterations(self) -> int:
        """Sum of the iteration counts declared by every progress-bar method of this class."""
        total = 0
        for name in dir(type(self)):
            method = getattr(type(self), name, None)
            func = getattr(method, "_num_iterations_func", None)
            if func is not None:
                total += func(self)
        return total
