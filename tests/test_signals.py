"""Stop requests inside a submitit job: which signals the trainer takes, and the requeue."""

import os
import signal

import pytest

from nip.errors import NipInterrupted
from nip.run import _requeue_if_submitit
from nip.utils.signals import StopRequests, submitit_handler


class FakeSubmititHandler:
    """Stands in for submitit's job signal handler (its methods are what submitit installs)."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []

    def bypass(self, signum, frame):
        self.calls.append(("bypass", signum))

    def checkpoint_and_try_requeue(self, signum, frame):
        self.calls.append(("requeue", signum))
        raise SystemExit(-1)  # what submitit does once it has asked SLURM to requeue


FakeSubmititHandler.__module__ = "submitit.core.job_environment"


@pytest.fixture
def submitit_job():
    """This process as a submitit job: submitit's handlers for SIGTERM and SIGUSR2."""
    fake = FakeSubmititHandler()
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, fake.bypass),
        signal.SIGUSR2: signal.signal(signal.SIGUSR2, fake.checkpoint_and_try_requeue),
    }
    yield fake
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_submitit_handlers_are_recognised(submitit_job):
    assert submitit_handler(signal.SIGUSR2) == submitit_job.checkpoint_and_try_requeue
    assert submitit_handler(signal.SIGINT) is None


def test_in_a_submitit_job_sigterm_stays_submitits_and_sigusr2_is_a_stop(submitit_job):
    """SLURM sends SIGTERM with a preemption and on every requeue; submitit ignores it, and so
    does the trainer there. SIGUSR2 becomes a stop request (the checkpoint comes first)."""
    with StopRequests() as stops:
        os.kill(os.getpid(), signal.SIGTERM)
        assert not stops.requested
        assert submitit_job.calls == [("bypass", signal.SIGTERM)]
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stops.signum == signal.SIGUSR2 and stops.received == {signal.SIGUSR2}
    # submitit's handlers are back once training is over.
    assert signal.getsignal(signal.SIGUSR2) == submitit_job.checkpoint_and_try_requeue


def test_outside_submitit_sigterm_is_a_stop():
    with StopRequests() as stops:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stops.signum == signal.SIGTERM


def test_a_stop_on_sigusr2_hands_over_to_submitit_to_requeue(submitit_job, capsys):
    stop = NipInterrupted("stopped by SIGUSR2 during iteration 3", signal.SIGUSR2)
    with pytest.raises(SystemExit):
        _requeue_if_submitit(stop)
    assert submitit_job.calls == [("requeue", signal.SIGUSR2)]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["nip: stopped by SIGUSR2 during iteration 3; requeueing the SLURM job to resume"]


def test_other_stops_are_not_requeued(submitit_job):
    """Ctrl-C in an interactive submitit job ends it: no requeue."""
    _requeue_if_submitit(NipInterrupted("stopped by SIGINT", signal.SIGINT))
    assert submitit_job.calls == []


def test_no_requeue_outside_submitit():
    _requeue_if_submitit(NipInterrupted("stopped by SIGUSR2", signal.SIGUSR2))
