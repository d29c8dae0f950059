"""Background jobs: durable, observable, cancellable runs of the engine (issue #5).

- :mod:`~tgd_core.jobs.store`: :class:`JobStore`, the job table in ``<state dir>/jobs.sqlite``.
- :mod:`~tgd_core.jobs.registry`: job kinds → (config type, runner).
- :mod:`~tgd_core.jobs.context`: :class:`JobContext`, what a runner gets.
- :mod:`~tgd_core.jobs.worker`: the worker process (``tgd jobs worker``) and :func:`ensure_worker`.
- :mod:`~tgd_core.jobs.run_one`: runs one job in a child process of a worker.
- :mod:`~tgd_core.jobs.runners`: the runners of ``pi-cache`` and ``evaluate``.

A feature adds its kinds itself, when its module is imported (e.g. :mod:`tgd_core.training.jobs`)::

    register_kind("train", TrainConfig, run_train_job)

where ``TrainConfig`` is a pydantic model (``extra="forbid"`` so typos are rejected) or a
dataclass, validated at submit time, and ``run_train_job(config, ctx) -> dict`` receives the
validated config object. A runner reports ``ctx.progress(...)`` and ``ctx.log({...})``, checks
``ctx.should_stop()`` at step boundaries (then saves a checkpoint in ``ctx.checkpoint_dir`` and
raises :class:`JobStopped`, or its own exception, or returns: once it was told to stop, the job
ends ``cancelled``, or ``interrupted`` when its worker shut down or died), and loads its last
checkpoint when ``ctx.resume`` is True. Its returned dict (JSON-serialisable) becomes the job's
result. The registry imports the built-in feature modules
(:data:`~tgd_core.jobs.registry.BUILTIN_FEATURES`) and those named in ``TGD_JOB_PLUGINS`` on the
first lookup.
"""

from tgd_core.jobs.context import JobContext, JobStopped
from tgd_core.jobs.registry import JobKind, available_kinds, register_kind
from tgd_core.jobs.store import CANCELLABLE, FINISHED, RESUMABLE, STATUSES, Job, JobStore


def __getattr__(name: str):
    """``Supervisor`` and ``ensure_worker`` load :mod:`~tgd_core.jobs.worker` on first use, so
    ``python -m tgd_core.jobs.worker`` does not find it imported already; ``KINDS`` and
    ``REGISTRY`` load the feature modules that register the kinds (which import this package)."""
    if name in ("KINDS", "REGISTRY"):
        from tgd_core.jobs import registry

        return getattr(registry, name)
    if name in ("Supervisor", "ensure_worker"):
        from tgd_core.jobs import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CANCELLABLE", "FINISHED", "KINDS", "REGISTRY", "RESUMABLE", "STATUSES", "Job", "JobContext",
    "JobKind", "JobStopped", "JobStore", "Supervisor", "available_kinds", "ensure_worker",
    "register_kind",
]
