"""Solo-agent training (``trainer=solo_agent``): each agent's body classifies the data alone.

The supervised baseline of the paper: how well can the verifier (or a prover) decide the
question without any interaction? Each learning agent's policy body gets a solo head and
both are trained with cross-entropy (:class:`nip.trainers.supervised.SoloClassifiers`; the
original code trained only the head, its body parameter groups being empty). A seeded
``trainer.test_size`` part of the training split is held out and measured after every
epoch; the final test is on the scenario's test split. Checkpoints, exact resumption,
stop signals and W&B are those of every trainer (:class:`CheckpointedTrainer`).
"""

import copy
import math
import time
from typing import Any, ClassVar

import torch

from nip.checkpointing import restore_rng_state
from nip.plotting import plot_solo_metrics
from nip.stats import share_key
from nip.trainers.checkpointed import CheckpointedTrainer, resident_memory_mb
from nip.trainers.registry import TRAINER_REGISTRY
from nip.trainers.supervised import SoloClassifiers, classification_stats, epoch_order
from nip.trainers.trainer_base import TrainerState, attach_progress_bar
from nip.utils.seeding import derive_seed, set_global_seed

# Examples per forward pass when only measuring (no gradients kept).
EVAL_BATCH_SIZE = 1024


def heldout_split(num_examples: int, test_size: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Seeded ``(train, held-out)`` indices: ``round(test_size * n)`` examples held out.

    Raises
    ------
    ValueError
        When the split would leave either part empty (while ``test_size > 0``).
    """
    num_heldout = round(test_size * num_examples)
    if test_size > 0 and not 1 <= num_heldout < num_examples:
        raise ValueError(
            f"trainer.test_size={test_size} of {num_examples} training examples holds out "
            f"{num_heldout}; it must leave at least one example on each side"
        )
    generator = torch.Generator().manual_seed(derive_seed(seed, "solo_heldout_split"))
    order = torch.randperm(num_examples, generator=generator)
    heldout = order[:num_heldout].sort().values
    train = order[num_heldout:].sort().values
    return train, heldout


@TRAINER_REGISTRY.register("solo_agent")
class SoloAgentTrainer(CheckpointedTrainer):
    """Supervised training of every learning agent's body with a solo head.

    ``metrics.jsonl`` gets one line per epoch (``iteration`` = completed epochs - 1): per
    agent ``loss`` and ``accuracy`` over the epoch's training batches (each measured before
    its step) and ``heldout_loss`` / ``heldout_accuracy`` after the epoch; then one final line
    (``iteration`` = ``num_epochs``) with each agent's ``test_*`` statistics on the test split
    (overall, by label and by stratum, e.g. WL score).

    Parameters
    ----------
    hyper_params : HyperParameters
        The run's typed configuration (``trainer`` is a ``SoloAgentTrainerConfig``).
    scenario_instance : ScenarioInstance
        Datasets, protocol and agents (no environments).
    settings : ExperimentSettings
        Runtime settings.
    """

    trainer_type: ClassVar[str] = "solo_agent"
    ITERATION_NAME: ClassVar[str] = "epoch"

    def __init__(self, hyper_params, scenario_instance, settings):
        super().__init__(hyper_params, scenario_instance, settings)
        t = hyper_params.trainer
        self.policy = scenario_instance.combined_policy
        self.train_view = self.scenario.supervised_view(
            self.policy, scenario_instance.train_dataset, hyper_params.scenario, device=self.device
        )
        self.test_view = self.scenario.supervised_view(
            self.policy, scenario_instance.test_dataset, hyper_params.scenario, device=self.device
        )
        try:
            self.train_indices, self.heldout_indices = heldout_split(
                len(self.train_view), t.test_size, hyper_params.seed
            )
        except ValueError as e:
            from nip.errors import NipConfigError

            raise NipConfigError(str(e)) from None
        # The label-1 share of the examples trained on (the same every epoch).
        labels = self.train_view.labels(self.train_indices.to(self.device))
        self._train_share = labels.double().mean().item()
        self.classifiers = SoloClassifiers(
            self.train_view,
            self.agent_names,
            self.learning_agents,
            seed=hyper_params.seed,
            lr=t.lr,
            body_lr_factors=not t.body_lr_factor_override,
        )
        self._resume_or_initialise()

    @property
    def num_iterations(self) -> int:
        """``trainer.num_epochs``."""
        return self.hyper_params.trainer.num_epochs

    def _initialise_state(self) -> None:
        self.state = TrainerState()

    def _restore(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.classifiers.heads.load_state_dict(state["solo_heads"])
        self.classifiers.optimizer.load_state_dict(state["optimizer"])

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "solo_heads": self.classifiers.heads.state_dict(),
            "optimizer": self.classifiers.optimizer.state_dict(),
            # What the agents saw: no normalisation (read by nip.evaluate).
            "observation_norm": {},
        }

    def train(self) -> None:
        """Train for the remaining epochs, test, write the final metrics and plot."""
        log = self.settings.logger
        if self.state.iteration == self.num_iterations and self.state.tested:
            log.info(f"the run in {self.settings.run_dir} is already complete")
            self._plot()
            return
        self._prepare_run_directory()
        if self._checkpoint is not None:
            restore_rng_state(self._checkpoint["rng"])
        else:
            set_global_seed(derive_seed(self.hyper_params.seed, "training"))
        # SIGTERM, SIGINT and SIGUSR2 stop the loop at a safe point with a checkpoint.
        with self._stops:
            if self.state.iteration < self.num_iterations:
                with torch.enable_grad():
                    self.policy.train()
                    self.classifiers.train()
                    self._run_train_loop()
            test_stats = self._test_and_log()
            self.state.tested = True
            self.save_checkpoint()
        if self.settings.wandb_run is not None:
            self.settings.wandb_run.summary.update(test_stats)
        self._plot()
        log.info(self._summary(test_stats))

    @attach_progress_bar(lambda self: self.hyper_params.trainer.num_epochs)
    def _run_train_loop(self, iteration_context) -> None:
        """Epochs of minibatch steps, each followed by the held-out measurement."""
        t = self.hyper_params.trainer
        iteration_context.step(self.state.iteration)
        while self.state.iteration < self.num_iterations:
            epoch = self.state.iteration
            # The state at this epoch's start: a stop signal during the epoch writes it.
            self._boundary = copy.deepcopy(self._checkpoint_state())
            self._check_stop()
            start = time.perf_counter()
            order = self.train_indices[
                epoch_order(len(self.train_indices), self.hyper_params.seed, epoch)
            ]
            try:
                results = self.classifiers.train_epoch(order, t.batch_size, self._check_stop)
            except FloatingPointError as e:
                raise self._divergence_error(epoch, str(e)) from e
            elapsed = time.perf_counter() - start
            stats: dict[str, Any] = {"iteration": epoch, "epoch": epoch}
            for name, values in results.items():
                stats[f"{name}.loss"] = values["loss"]
                stats[f"{name}.accuracy"] = values["accuracy"]
            stats[share_key(self.scenario.label_names)] = self._train_share
            if len(self.heldout_indices):
                stats.update(self._measure(self.train_view, self.heldout_indices, "heldout_"))
            stats.update(
                time_epoch_s=elapsed,
                examples_per_s=len(order) / elapsed,
                sys_rss_mb=resident_memory_mb(),
            )
            self._log_row(stats)
            self.state.iteration += 1
            if (
                self.state.iteration % self.hyper_params.checkpoint.interval == 0
                or self.state.iteration == self.num_iterations
            ):
                self.save_checkpoint()
            shown = self.classifiers.trained[0]
            iteration_context.set_postfix(
                **{f"{shown}_acc": f"{stats.get(f'{shown}.heldout_accuracy', math.nan):.3f}"}
            )
            iteration_context.step()

    def _measure(self, view: Any, idx: torch.Tensor, prefix: str) -> dict[str, float]:
        """Per-agent statistics on examples ``idx`` of ``view`` (strata only for the test)."""
        strata = view.strata if prefix == "test_" else None
        return classification_stats(self.classifiers, view, idx, EVAL_BATCH_SIZE, prefix, strata)

    def _test_and_log(self) -> dict[str, float]:
        """Every agent's statistics on the test split, appended to the metrics (and W&B)."""
        test_stats = self._measure(self.test_view, torch.arange(len(self.test_view)), "test_")
        self._log_row({"iteration": self.state.iteration, **test_stats})
        return test_stats

    def _plot(self) -> None:
        plot_solo_metrics(
            self.metrics.path,
            self.settings.run_dir / "training_curves.png",
            self.agent_names,
            share_key(self.scenario.label_names),
        )

    def _summary(self, test_stats: dict[str, float]) -> str:
        """One line for the end of the run: each agent's test accuracy against chance."""
        share = test_stats[share_key(self.scenario.label_names, "test_")]
        accuracies = ", ".join(
            f"{name} {test_stats[f'{name}.test_accuracy']:.3f}" for name in self.classifiers.trained
        )
        return (
            f"solo test accuracy: {accuracies} (chance {max(share, 1 - share):.3f}: always "
            f"answering the majority label); outputs in {self.settings.run_dir}"
        )
