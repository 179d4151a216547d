"""Optional Ray backend: run job functions as Ray tasks and relay their progress to the job row.

Used by the worker when ``$LOUPE_RAY_ADDRESS`` is set (e.g. ``ray://head:10001`` or ``auto``).
The worker still claims the job, owns its row and records the outcome; the job function runs
as a Ray task (``num_gpus=1`` when the cluster has a GPU, else one CPU). Progress and log
lines travel back through a small relay actor that the worker drains every
:data:`RELAY_POLL_SECONDS`; a cancel request travels the other way.

The task opens its own connection to the database (the job functions read labels and register
model versions), so the database URL and the data and models directories must be reachable
from the cluster's nodes: a shared PostgreSQL and shared storage for a real cluster, or simply
the same machine for a local Ray instance.

Ray is imported only here, and only when this backend is used.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from services.training.context import JobCancelledError, JobContext
from workers.context import select_device
from workers.registry import JobFunction, describe_outcome

RAY_ADDRESS_ENV = "LOUPE_RAY_ADDRESS"
RELAY_POLL_SECONDS = 0.25
CANCEL_CHECK_SECONDS = 0.5


class RelayState:
    """The relay actor's state: events from the task, and the cancel flag for it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any]] = []
        self.cancelled = False

    def push(self, event: tuple[str, Any, Any]) -> None:
        """Queue a ``("progress", fraction, message)`` or ``("log", line, None)`` event."""
        self.events.append(event)

    def drain(self) -> list[tuple[str, Any, Any]]:
        """Return and forget the queued events."""
        events, self.events = self.events, []
        return events

    def cancel(self) -> None:
        """Ask the task to stop."""
        self.cancelled = True

    def is_cancelled(self) -> bool:
        """Whether the task was asked to stop."""
        return self.cancelled


class RelayReporter:
    """The reporter a job function gets inside a Ray task (sends events to the relay)."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay
        self._last_check = 0.0
        self._cancelled = False

    def progress(self, fraction: float, message: str) -> None:
        """Send progress (fire and forget)."""
        self.relay.push.remote(("progress", float(fraction), str(message)))

    def log(self, line: str) -> None:
        """Send a log line (fire and forget)."""
        self.relay.push.remote(("log", str(line), None))

    def should_stop(self) -> bool:
        """Ask the relay whether the job was cancelled (at most every half second)."""
        import ray

        now = time.monotonic()
        if not self._cancelled and now - self._last_check >= CANCEL_CHECK_SECONDS:
            self._last_check = now
            self._cancelled = bool(ray.get(self.relay.is_cancelled.remote()))
        return self._cancelled


def run_job_task(function: JobFunction, spec: dict[str, Any], relay: Any) -> Any:
    """The body of the Ray task: rebuild a context on the node and run the job function."""
    from db.engine import create_engine_for_url, make_session_factory

    engine = create_engine_for_url(spec["database_url"])
    try:
        ctx = JobContext(
            job_id=spec["job_id"],
            kind=spec["kind"],
            parameters=dict(spec["parameters"]),
            project_id=spec["project_id"],
            created_by_id=spec["created_by_id"],
            session_factory=make_session_factory(engine),
            data_dir=Path(spec["data_dir"]),
            models_root=Path(spec["models_root"]),
            device=select_device(spec.get("device")),
            reporter=RelayReporter(relay),
        )
        return describe_outcome(function(ctx))
    finally:
        engine.dispose()
        # Calls from one caller to an actor run in order: waiting for this one means every
        # progress/log event this task pushed has reached the relay before the driver drains.
        import ray

        ray.get(relay.is_cancelled.remote())


class RayBackend:
    """Runs job functions on a Ray cluster.

    Args:
        address: The cluster address for ``ray.init`` (ignored when Ray is already
            initialised in this process, e.g. by a test's local instance).
        device: A device to force in the task (default: CUDA when the task got a GPU).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, device: str | None = None) -> None:
        self.address = address
        self.device = device

    def run(self, function: JobFunction, ctx: JobContext) -> Any:
        """Submit ``function`` as a task, relay its events until it ends, return its result."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        relay = ray.remote(num_cpus=0)(RelayState).remote()
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task_fn = ray.remote(run_job_task).options(
            num_gpus=gpus, num_cpus=0 if gpus else 1, max_retries=0
        )
        task = task_fn.remote(function, self._spec(ctx), relay)
        cancel_sent = False
        try:
            while True:
                ready, _ = ray.wait([task], timeout=RELAY_POLL_SECONDS)
                self._forward(ray.get(relay.drain.remote()), ctx)
                if not cancel_sent and ctx.should_stop():
                    relay.cancel.remote()
                    cancel_sent = True
                if ready:
                    break
            self._forward(ray.get(relay.drain.remote()), ctx)
            try:
                return ray.get(task)
            except ray.exceptions.RayTaskError as err:
                cause = err.as_instanceof_cause()
                if isinstance(cause, JobCancelledError):
                    raise JobCancelledError(str(cause)) from None
                raise cause from None
        finally:
            ray.kill(relay)

    def _spec(self, ctx: JobContext) -> dict[str, Any]:
        bind = ctx.session_factory.kw["bind"]
        return {
            "job_id": ctx.job_id,
            "kind": ctx.kind,
            "parameters": dict(ctx.parameters),
            "project_id": ctx.project_id,
            "created_by_id": ctx.created_by_id,
            "database_url": bind.url.render_as_string(hide_password=False),
            "data_dir": str(Path(ctx.data_dir).resolve()),
            "models_root": str(Path(ctx.models_root).resolve()),
            "device": self.device,
        }

    @staticmethod
    def _forward(events: list[tuple[str, Any, Any]], ctx: JobContext) -> None:
        for kind, first, second in events:
            if kind == "progress":
                ctx.progress(first, second)
            elif kind == "log":
                ctx.log(first)
