"""Testing, logging and plotting of the RL trainers (a part of
:class:`nip.trainers.rl_tensordict_base.TensorDictRlTrainer`)."""

import contextlib

import torch
from tensordict import TensorDictBase

from nip.evaluation import EpisodeResults, episode_stats, run_episodes
from nip.plotting import plot_metrics
from nip.rollout_samples import log_rollout_samples, sample_episodes
from nip.stats import chance_accuracy, share_key
from nip.trainers.log_stats import iteration_stats
from nip.trainers.trainer_base import attach_progress_bar
from nip.utils.seeding import derive_seed, fork_rng


class RlTestingMixin:
    """The test loop, the statistics logged per iteration and test, rollout samples for
    W&B and the end-of-run plot.

    Mixed into :class:`~nip.trainers.rl_tensordict_base.TensorDictRlTrainer`, whose
    attributes it reads: ``hyper_params``, ``settings``, ``scenario``,
    ``scenario_instance``, ``agent_names``, ``random_agents``, ``learning_agents``,
    ``loss_module``, ``policy_operator``, ``test_environment``, ``metrics`` and ``state``.
    """

    def _build_test_context(self, stack: contextlib.ExitStack) -> contextlib.ExitStack:
        """No gradients and agents in evaluation mode for the duration of ``stack``."""
        stack.enter_context(torch.no_grad())
        self.scenario_instance.combined_policy.eval()
        self.scenario_instance.combined_value.eval()
        stack.callback(self.scenario_instance.combined_policy.train)
        stack.callback(self.scenario_instance.combined_value.train)
        return stack

    def _plot(self) -> None:
        plot_metrics(
            self.metrics.path,
            self.settings.run_dir / "training_curves.png",
            self.agent_names,
            share_key(self.scenario.label_names),
        )

    def _test_and_log(self) -> dict[str, float]:
        """Run the test loop on the current agents; append its line to the metrics (and W&B).

        The line is tagged with the number of completed training iterations. The test draws
        only from generators of its own, so training continues exactly as without it.
        """
        with contextlib.ExitStack() as stack:
            self._build_test_context(stack)
            test_stats = self._run_test_loop()
        self._log_row({"iteration": self.state.iteration, **test_stats})
        return test_stats

    def _summary(self, test_stats: dict[str, float]) -> str:
        """One line for the end of the run: test accuracy against chance, and outcomes."""
        chance = chance_accuracy(test_stats[share_key(self.scenario.label_names, "test_")])
        return (
            f"test accuracy {test_stats['test_mean_accuracy']:.3f} "
            f"(chance {chance:.3f}: always answering the majority label); "
            f"ran out of rounds {test_stats['test_terminated_fraction']:.3f}, "
            f"accepted {test_stats['test_accept_fraction']:.3f}, "
            f"rejected {test_stats['test_reject_fraction']:.3f}; "
            f"mean episode length {test_stats['test_mean_episode_length']:.2f} rounds; "
            f"outputs in {self.settings.run_dir}"
        )

    def _log_rollout_samples(self, data: TensorDictBase, iteration: int) -> None:
        """Every ``logger.rollout_sample_period`` iterations, a few episodes to W&B."""
        period = getattr(self.hyper_params.logger, "rollout_sample_period", 0)
        if not period or iteration % period != 0:
            return
        # A dedicated generator: sampling for display must not move the training RNG.
        generator = torch.Generator().manual_seed(derive_seed(self.hyper_params.seed, iteration))
        samples = sample_episodes(
            data,
            self.protocol_handler,
            self.scenario,
            self.hyper_params.logger.num_rollout_samples,
            generator,
            strata=self.scenario.strata(self.scenario_instance.train_dataset),
        )
        log_rollout_samples(self.settings.wandb_run, samples, iteration)

    def _get_log_stats(
        self,
        rollouts: TensorDictBase,
        mean_loss_vals: TensorDictBase | None = None,
        *,
        train: bool = True,
        updated: tuple[bool, ...] | None = None,
    ) -> dict[str, float]:
        """Statistics of a batch of rollouts (and of the losses) as a flat dict of floats
        (see :func:`nip.trainers.log_stats.iteration_stats`).

        ``updated`` says which agents learnt from the batch (default: every learning agent);
        only they have loss statistics.
        """
        return iteration_stats(
            rollouts,
            mean_loss_vals,
            agent_names=self.agent_names,
            label_names=self.scenario.label_names,
            random_agents=self.random_agents,
            updated=self.learning_agents if updated is None else updated,
            scheduled=self.hyper_params.schedule.name != "constant",
            critic_coeff=getattr(self.loss_module, "critic_coeff", None),
            prefix="" if train else "test_",
        )

    @attach_progress_bar(lambda self: self.hyper_params.trainer.num_test_passes, leave=False)
    def _run_test_loop(self, iteration_context) -> dict[str, float]:
        """One episode per test pair and pass; accuracy overall, by label and by WL score.

        Agents sample their actions as in training (``trainer.test_greedy`` plays the most
        likely actions instead). The sampling is seeded from the experiment seed, the same
        at every test, so the figures are a function of the agents alone; passes after the
        first draw new samples. The global generators are restored afterwards.
        """
        t = self.hyper_params.trainer
        dataset = self.scenario_instance.test_dataset
        base = self.scenario_instance.test_environment
        with fork_rng(self.device):
            torch.manual_seed(derive_seed(self.hyper_params.seed, "test"))
            base.cycler.restart()
            base.set_seed(derive_seed(self.hyper_params.seed, "test_environment"))
            results = []
            for _ in range(t.num_test_passes):
                results.append(
                    run_episodes(
                        self.test_environment,
                        self.policy_operator,
                        len(dataset),
                        greedy=t.test_greedy,
                    )
                )
                iteration_context.step()
        merged = EpisodeResults.concatenate(results)
        strata = self.scenario.strata(dataset)
        stats = episode_stats(
            merged,
            self.agent_names,
            strata,
            prefix="test_",
            label_names=self.scenario.label_names,
        )
        stats["test_greedy"] = t.test_greedy
        return stats
