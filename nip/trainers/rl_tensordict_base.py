"""The TensorDict RL trainer: collect, compute advantages, update, log, checkpoint, resume."""

import contextlib
import copy
import dataclasses
import time
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers import SamplerWithoutReplacement

from nip.checkpointing import (
    restore_rng_state,
    tensordict_from_state,
    tensordict_to_state,
)
from nip.config.schedule import agents_updating
from nip.errors import NipCheckpointError
from nip.objectives.ppo import PerAgentLoss
from nip.operators import (
    add_episode_return,
    build_policy_operator,
    build_value_operator,
)
from nip.trainers.advantages import mark_agent_ends, value_pass_advantages
from nip.trainers.checkpointed import CheckpointedTrainer, resident_memory_mb
from nip.trainers.observation_norm import (
    ObservationNorms,
    add_shared_observation_norms,
    describe_norm_state,
    estimate_norm_stats,
    load_norm_state,
    norm_state,
)
from nip.trainers.param_freezer import ParamGroupFreezer, per_agent_adam
from nip.trainers.rl_testing import RlTestingMixin
from nip.trainers.supervised import pretrain_policy_bodies
from nip.trainers.trainer_base import TrainerState, attach_progress_bar
from nip.utils.seeding import derive_seed, set_global_seed


class TensorDictRlTrainer(RlTestingMixin, CheckpointedTrainer):
    """Base of the RL trainers: everything but the loss and advantage estimator.

    The test loop, logged statistics and plots come from
    :class:`~nip.trainers.rl_testing.RlTestingMixin`.

    Subclasses implement :meth:`_get_loss_module_and_gae`. Construction builds the operators,
    loss, optimizer and replay buffer and then either resumes from the run's checkpoint or
    initialises a fresh state; :meth:`train` runs (the rest of) the training loop and the
    final test.

    Parameters
    ----------
    hyper_params : HyperParameters
        The run's typed configuration.
    scenario_instance : ScenarioInstance
        Datasets, protocol, environments and the combined agents.
    settings : ExperimentSettings
        Runtime settings.
    """

    trainer_type: ClassVar[str] = "rl"
    # Hyper-parameter fields that decide what a pretrained-body cache entry holds.
    PRETRAINED_MODEL_CACHE_PARAM_KEYS: ClassVar[tuple[str, ...]] = ("scenario", "protocol", "seed")

    #: The TorchRL policy: one probabilistic actor over all agents (see :meth:`_build_operators`).
    policy_operator: nn.Module
    #: The TorchRL value operator over all agents (see :meth:`_build_operators`).
    value_operator: nn.Module

    def __init__(self, hyper_params, scenario_instance, settings):
        super().__init__(hyper_params, scenario_instance, settings)
        #: Rounds after which an undecided episode is terminated (the protocol's).
        self.max_message_rounds = self.protocol_handler.max_message_rounds
        # Both environments keep every agent's return over whole episodes (RewardSum).
        self.train_environment = add_episode_return(scenario_instance.train_environment)
        self.test_environment = add_episode_return(scenario_instance.test_environment)
        self.train_collector: Collector | None = None

        if hyper_params.trainer.normalize_observations:
            self._add_normalization_transforms()
        self._build_operators()
        #: The loss module and the advantage estimator from :meth:`_get_loss_module_and_gae`.
        self.loss_module, self.gae = self._get_loss_module_and_gae()
        #: Per-agent Adam, and what freezes the groups of agents off their turn.
        self.optimizer, self.param_group_freezer = self._get_optimizer_and_param_freezer(
            self.loss_module
        )
        #: Each iteration's frames, sampled without replacement in minibatches.
        self.replay_buffer = self._get_replay_buffer()
        self._resume_or_initialise()

    @property
    def num_iterations(self) -> int:
        """``trainer.num_iterations``."""
        return self.hyper_params.trainer.num_iterations

    # -- building --------------------------------------------------------------------------
    def _add_normalization_transforms(self) -> None:
        """Add observation normalisation of ``x`` and ``message`` to both environments
        (identity until estimated or restored; see
        :func:`nip.trainers.observation_norm.add_shared_observation_norms`)."""
        self.observation_norms: ObservationNorms = add_shared_observation_norms(
            self.train_environment, self.test_environment
        )

    def _observation_norm_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return norm_state(getattr(self, "observation_norms", {}))

    def _set_observation_norm_state(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        load_norm_state(getattr(self, "observation_norms", {}), state)

    def _estimate_normalization_stats(self) -> None:
        """Estimate the normalisation statistics from seeded random play (see
        :func:`nip.trainers.observation_norm.estimate_norm_stats`)."""
        estimate_norm_stats(
            self.observation_norms,
            self.scenario_instance.train_environment,
            env_seed=derive_seed(self.hyper_params.seed, "normalization"),
            action_seed=derive_seed(self.hyper_params.seed, "normalization_actions"),
            num_frames=self.hyper_params.trainer.num_normalization_frames,
        )
        self.settings.logger.info(describe_norm_state(self._observation_norm_state()))

    def _build_operators(self) -> None:
        """The TorchRL policy (a probabilistic actor over all agents) and value operators."""
        self.policy_operator = build_policy_operator(
            self.scenario_instance.combined_policy,
            self.scenario.policy_in_keys,
            mask_ineffective_actions=self.hyper_params.loss.mask_ineffective_actions,
        )
        self.value_operator = build_value_operator(
            self.scenario_instance.combined_value, self.scenario.value_in_keys
        )

    @abstractmethod
    def _get_loss_module_and_gae(self) -> tuple[PerAgentLoss, nn.Module | None]:
        """The loss module and the advantage estimator (``None`` if the loss needs none)."""

    def _get_optimizer_and_param_freezer(
        self, loss_module: nn.Module
    ) -> tuple[torch.optim.Optimizer, ParamGroupFreezer]:
        """Adam over the scenario's per-agent parameter groups (see
        :func:`nip.trainers.param_freezer.per_agent_adam`)."""
        groups = self.scenario.parameter_groups(
            self.scenario_instance.combined_policy,
            self.scenario_instance.combined_value,
            self.hyper_params.scenario,
            self.protocol_handler,
            self.hyper_params.trainer.lr,
        )
        return per_agent_adam(groups, loss_module, self.agent_names)

    def _get_replay_buffer(self, transform=None) -> ReplayBuffer:
        """A buffer holding one iteration's frames, sampled in minibatches without replacement."""
        t = self.hyper_params.trainer
        return ReplayBuffer(
            storage=LazyTensorStorage(t.frames_per_batch, device=self.device),
            sampler=SamplerWithoutReplacement(),
            batch_size=t.minibatch_size,
            transform=transform,
        )

    def _get_data_collectors(self) -> tuple[Collector, None]:
        """The training collector; the test loop plays whole episodes itself (see below).

        The final test plays exactly one episode per test pair and pass
        (:func:`nip.evaluation.run_episodes`) instead of collecting fixed-size batches, so
        every test pair counts equally; hence no test collector.
        """
        collector = Collector(
            self.train_environment,
            self.policy_operator,
            frames_per_batch=self.hyper_params.trainer.frames_per_batch,
            total_frames=-1,
            device=self.device,
            track_traj_ids=False,
            auto_register_policy_transforms=False,
        )
        return collector, None

    # -- state -----------------------------------------------------------------------------
    def _initialise_state(self) -> None:
        """A fresh run: iteration 0, normalisation statistics estimated, or a base run's agents."""
        self.state = TrainerState()
        if self.hyper_params.trainer.normalize_observations:
            self._estimate_normalization_stats()
        if self.settings.base_run_checkpoint is not None:
            version = getattr(getattr(self.hyper_params, "base_run", None), "version", "latest")
            self._load_base_run_agents(version)

    def _load_base_run_agents(self, version: str = "latest") -> None:
        """Take the agents' weights and normalisation statistics from a base run's checkpoint.

        Parameters
        ----------
        version : str
            Which W&B artifact version of the base run's checkpoint (``latest``, ``v3``, ...).

        Raises
        ------
        NipCheckpointError
            When the checkpoint is unreadable or its agents differ from this run's.
        """
        state = self._load_state_dict_from_base_run_checkpoint(version)
        try:
            self.scenario_instance.combined_policy.load_state_dict(state["policy"])
            self.scenario_instance.combined_value.load_state_dict(state["value"])
        except RuntimeError as e:
            raise NipCheckpointError(
                f"the base run {self.settings.base_run_checkpoint} has different agents: "
                f"{str(e).splitlines()[0]}"
            ) from e
        if state["observation_norm"]:
            self._set_observation_norm_state(state["observation_norm"])
        self.settings.logger.info(
            f"agents initialised from base run {self.settings.base_run_checkpoint} "
            f"(iteration {state['iteration']})"
        )

    def _restore(self, state: dict[str, Any]) -> None:
        """Models, optimizer, loss state and normalisation statistics from a checkpoint."""
        t = self.hyper_params.trainer
        stored_iterations = state["hyper_params"]["trainer"]["num_iterations"]
        if t.anneal_lr and state["iteration"] > 0 and stored_iterations != t.num_iterations:
            raise NipCheckpointError(
                f"trainer.anneal_lr=true decays the learning rate to zero over the "
                f"trainer.num_iterations={stored_iterations} of the run in "
                f"{self.settings.run_dir}; changing it to {t.num_iterations} would jump the "
                f"learning rate; start a new run directory with base_run.run_id="
                f"{self.settings.run_dir} to continue from these agents"
            )
        self.scenario_instance.combined_policy.load_state_dict(state["policy"])
        self.scenario_instance.combined_value.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss_module.load_training_state(state.get("loss", {}))
        self._set_observation_norm_state(state["observation_norm"])

    def _trainer_state(self) -> dict[str, Any]:
        """Models, optimizer, loss state, normalisation statistics, in-flight episodes."""
        state = {
            "policy": self.scenario_instance.combined_policy.state_dict(),
            "value": self.scenario_instance.combined_value.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loss": self.loss_module.training_state(),
            "observation_norm": self._observation_norm_state(),
        }
        if self.train_collector is not None:
            state["train_env"] = self.scenario_instance.train_environment.env_state()
            state["carrier"] = tensordict_to_state(self.train_collector._carrier)
        return state

    # -- contexts --------------------------------------------------------------------------
    def _build_train_context(self, stack: contextlib.ExitStack) -> contextlib.ExitStack:
        """Gradients on and agents in training mode for the duration of ``stack``."""
        stack.enter_context(torch.set_grad_enabled(True))
        self.scenario_instance.combined_policy.train()
        self.scenario_instance.combined_value.train()
        return stack

    # -- training --------------------------------------------------------------------------
    def train(self) -> None:
        """Train for the remaining iterations, test, write the final metrics and plot."""
        t = self.hyper_params.trainer
        log = self.settings.logger
        if self.state.iteration == t.num_iterations and self.state.tested:
            log.info(f"the run in {self.settings.run_dir} is already complete")
            self._plot()
            return
        self._prepare_run_directory()
        if self._checkpoint is None:
            self._pretrain_agents()
        self.train_collector, _ = self._get_data_collectors()
        if self._checkpoint is not None and "carrier" in self._checkpoint:
            self.scenario_instance.train_environment.load_env_state(self._checkpoint["train_env"])
            carrier = tensordict_from_state(self._checkpoint["carrier"], self.device)
            self.train_collector._carrier.update(carrier)
            restore_rng_state(self._checkpoint["rng"])
        else:
            set_global_seed(derive_seed(self.hyper_params.seed, "training"))
        try:
            # SIGTERM, SIGINT and SIGUSR2 stop the loop at a safe point with a checkpoint.
            with self._stops:
                if self.state.iteration < t.num_iterations:
                    with contextlib.ExitStack() as stack:
                        self._build_train_context(stack)
                        self._run_train_loop()
                test_stats = self._test_and_log()
                self.state.tested = True
                self.save_checkpoint()
        finally:
            self.train_collector.shutdown()
        if self.settings.wandb_run is not None:
            self.settings.wandb_run.summary.update(test_stats)
        self._plot()
        log.info(self._summary(test_stats))

    def _pretrain_agents(self) -> None:
        """Supervised pretraining of every agent's policy body (``trainer.pretrain_agents``).

        Runs once, at the start of a fresh run (a resumed run has the trained weights in its
        checkpoint). The result is cached by :attr:`PRETRAINED_MODEL_CACHE_PARAM_KEYS` plus
        the pretraining settings, so runs that only differ elsewhere share it.
        """
        t = self.hyper_params.trainer
        if not t.pretrain_agents:
            return
        params = dataclasses.asdict(self.hyper_params)
        cache_key = {k: params[k] for k in self.PRETRAINED_MODEL_CACHE_PARAM_KEYS}
        cache_key["pretrain"] = [t.pretrain_epochs, t.pretrain_batch_size, t.pretrain_lr]
        cache_key["observation_norm"] = {
            k: [v["loc"].item(), v["scale"].item()]
            for k, v in self._observation_norm_state().items()
        }
        # The training procedure's version: entries of an earlier procedure are not reused.
        cache_key["procedure"] = 2
        view = self.scenario.supervised_view(
            self.scenario_instance.combined_policy,
            self.scenario_instance.train_dataset,
            self.hyper_params.scenario,
            observation_stats=self._observation_norm_state(),
            device=self.device,
        )
        with contextlib.ExitStack() as stack:
            self._build_train_context(stack)
            pretrain_policy_bodies(
                view,
                self.agent_names,
                self.learning_agents,
                epochs=t.pretrain_epochs,
                batch_size=t.pretrain_batch_size,
                lr=t.pretrain_lr,
                seed=self.hyper_params.seed,
                cache_key=cache_key,
                cache_dir=self.settings.cache_dir,
            )

    def _prepare_for_advantage(self, data: TensorDictBase) -> None:
        """Give every agent done and terminated flags (``[..., A, 1]``) for GAE (see
        :func:`nip.trainers.advantages.mark_agent_ends`)."""
        mark_agent_ends(data, self.num_agents, self.hyper_params.advantage.bootstrap_at_decisions)

    def _estimate_advantages(self, data: TensorDictBase) -> None:
        """Per-agent advantages and value targets for a ``[envs, time]`` batch, in place: one
        value pass over the batch (:func:`nip.trainers.advantages.value_pass_advantages`);
        a loss without an estimator gets the episode ends alone."""
        self._prepare_for_advantage(data)
        if self.gae is not None:
            value_pass_advantages(
                data,
                self.value_operator,
                self.gae,
                self.hyper_params.advantage.bootstrap_at_decisions,
            )

    @attach_progress_bar(lambda self: self.hyper_params.trainer.num_iterations)
    def _run_train_loop(self, iteration_context) -> None:
        """Collect, estimate advantages, update on minibatches, log and checkpoint."""
        t = self.hyper_params.trainer
        iteration_context.step(self.state.iteration)
        collector_iterator = iter(self.train_collector)
        while self.state.iteration < t.num_iterations:
            iteration = self.state.iteration
            # The state at this iteration boundary, kept in memory: a stop signal during the
            # iteration writes it, so at most the iteration in progress is redone on resume
            # (exactly as if uninterrupted), whatever checkpoint.interval is.
            self._boundary = copy.deepcopy(self._checkpoint_state())
            self._check_stop()
            start = time.perf_counter()
            if t.anneal_lr:
                for group in self.param_group_freezer.all_groups:
                    group["lr"] = group["initial_lr"] * (1 - iteration / t.num_iterations)
            updated = self._apply_update_schedule(iteration)
            try:
                data, mean_loss_vals, times = self._run_iteration(collector_iterator)
            except FloatingPointError as e:
                raise self._divergence_error(iteration, str(e), getattr(e, "advice", None)) from e
            finally:
                # Every agent back in the optimizer before anything is logged or saved.
                self._apply_update_schedule(None)
            elapsed = time.perf_counter() - start

            stats = {
                "iteration": iteration,
                **self._get_log_stats(data, mean_loss_vals, updated=updated),
            }
            stats.update(
                frames=(iteration + 1) * t.frames_per_batch,
                **times,
                time_iteration_s=elapsed,
                frames_per_s=t.frames_per_batch / elapsed,
                sys_rss_mb=resident_memory_mb(),
            )
            self._log_row(stats)
            if self.settings.wandb_run is not None:
                self._log_rollout_samples(data, iteration)
            self.state.iteration += 1
            # A test during training comes before the checkpoint, so the checkpoint's count
            # of metrics lines includes it and a resumed run never repeats or loses it.
            if (
                t.test_interval
                and self.state.iteration % t.test_interval == 0
                and self.state.iteration < t.num_iterations
            ):
                self._test_and_log()
            if (
                self.state.iteration % self.hyper_params.checkpoint.interval == 0
                or self.state.iteration == t.num_iterations
            ):
                self.save_checkpoint()
            iteration_context.set_postfix(
                acc=f"{stats['mean_accuracy']:.3f}", fps=f"{stats['frames_per_s']:.0f}"
            )
            iteration_context.step()

    def _apply_update_schedule(self, iteration: int | None) -> tuple[bool, ...]:
        """Let only the agents that ``schedule`` updates in ``iteration`` learn in it.

        The others (and ``frozen``/``random`` agents, always) leave the optimizer and autograd
        and their loss terms are zero. ``None`` puts every learning agent back.

        Returns
        -------
        tuple of bool
            Per agent, whether it learns now.
        """
        if iteration is None:
            updating = self.learning_agents
        else:
            scheduled = agents_updating(
                self.hyper_params.schedule,
                self.agent_names,
                self.protocol_handler.prover_names,
                iteration,
            )
            pairs = zip(scheduled, self.learning_agents, strict=True)
            updating = tuple(u and learn for u, learn in pairs)
        self.param_group_freezer.set_frozen(
            {name for name, u in zip(self.agent_names, updating, strict=True) if not u}
        )
        self.loss_module.learning.copy_(torch.tensor(updating))
        return updating

    def _run_iteration(
        self, collector_iterator: Iterator[TensorDictBase]
    ) -> tuple[TensorDictBase, TensorDictBase, dict[str, float]]:
        """One iteration's work: collect a batch, estimate advantages, update on it.

        Returns
        -------
        data : TensorDictBase
            The collected batch, with advantages.
        mean_loss_vals : TensorDictBase
            Loss terms averaged over the minibatches.
        times : dict
            ``time_collect_s``, ``time_advantage_s`` and ``time_update_s``.
        """
        start = time.perf_counter()
        data = next(collector_iterator)
        self._check_stop()
        collected = time.perf_counter()
        self._estimate_advantages(data)
        advantaged = time.perf_counter()
        self.replay_buffer.empty()
        self._fill_replay_buffer(data)
        mean_loss_vals = self._train_on_replay_buffer()
        updated = time.perf_counter()
        times = {
            "time_collect_s": collected - start,
            "time_advantage_s": advantaged - collected,
            "time_update_s": updated - advantaged,
        }
        return data, mean_loss_vals, times

    def _train_on_replay_buffer(self) -> TensorDictBase:
        """Epochs x minibatches of gradient steps on this iteration's frames.

        Returns
        -------
        TensorDictBase
            The loss module's outputs averaged over all minibatches.
        """
        t = self.hyper_params.trainer
        num_minibatches = t.frames_per_batch // t.minibatch_size
        total = None
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for _ in range(t.num_epochs):
            for _ in range(num_minibatches):
                minibatch = self.replay_buffer.sample().to(self.device)
                loss_vals = self.loss_module(minibatch.reshape(-1))
                total_loss = self.loss_module.total_loss(loss_vals)
                self._backward(minibatch, loss_vals, total_loss)
                norm = torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
                # Never step (let alone checkpoint) on non-finite values: stop instead. One
                # check per minibatch: a non-finite loss makes the gradient norm non-finite.
                if not torch.isfinite(norm):
                    if not torch.isfinite(total_loss):
                        raise FloatingPointError(f"loss {total_loss.item():.4g}")
                    raise FloatingPointError(f"gradient norm {norm.item():.4g}")
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                detached = loss_vals.detach()
                total = detached if total is None else total + detached
                self._check_stop()
        return total / (t.num_epochs * num_minibatches)

    def _fill_replay_buffer(self, data: TensorDictBase) -> None:
        """Put an iteration's ``[envs, time]`` batch in the buffer (here: as single frames)."""
        self.replay_buffer.extend(data.reshape(-1))

    def _backward(
        self, minibatch: TensorDictBase, loss_vals: TensorDictBase, total_loss: torch.Tensor
    ) -> None:
        """Fill the parameters' ``.grad`` for one minibatch (here: the loss's gradient)."""
        total_loss.backward()
