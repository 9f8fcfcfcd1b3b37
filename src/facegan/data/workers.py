"""Loader-worker signal handling: a job-wide SIGTERM is the trainer's to handle, not the workers'."""

from __future__ import annotations

import os
import signal
import threading


def leave_job_sigterm_to_the_trainer(worker_id: int, trainer_pid: int) -> None:
    """A loader worker obeys SIGTERM from its trainer process and ignores it from anyone else.

    ``timeout``, Slurm and systemd deliver SIGTERM to every process of the job. A worker killed by it
    makes the trainer raise "DataLoader worker ... killed by signal" at an arbitrary point, before
    Lightning's SIGTERM handling can save a checkpoint at the next batch boundary; so such a SIGTERM
    is left to the trainer, which stops, saves and then shuts its workers down. The trainer's own
    ``terminate()`` (DataLoader shutdown, ``multiprocessing`` at interpreter exit) still ends the worker
    at once: ignoring SIGTERM outright would make that exit wait forever. A worker whose trainer died
    ends by itself (the DataLoader watchdog).

    SIGTERM is blocked and taken by a daemon thread with ``sigwaitinfo``, which names the sender
    (``trainer_pid`` is passed in rather than taken from ``getppid``: under ``forkserver`` the
    worker is forked by the fork server, not by the trainer).
    Where that call does not exist (macOS, Windows) the worker keeps the default: it dies of any SIGTERM.
    Use it as a DataLoader's ``worker_init_fn`` through ``functools.partial(..., trainer_pid=os.getpid())``.
    """
    if not hasattr(signal, "sigwaitinfo"):
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not a handler inherited from the trainer's fork
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by the thread below

    def wait_for_sigterm() -> None:
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != trainer_pid:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.kill(os.getpid(), signal.SIGTERM)  # default action: the worker ends "killed by SIGTERM"

    threading.Thread(target=wait_for_sigterm, name="facegan-sigterm", daemon=True).start()
