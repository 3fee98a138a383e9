"""The dashboard's slow one-time work (loading the model, compiling kernels, capturing default traces) done in the
background, so that ``workbench serve`` answers at once and each tab goes live as soon as what it needs is ready.

A `WarmUp` holds named `Job`s and which jobs each tab needs. ``start()`` runs them on one daemon thread in
order; ``prioritize(tab)`` moves the jobs of a tab the user opened to the front of the queue (the job already
running finishes first); ``ready(tab)`` and ``describe(tab)`` tell a waiting tab where it stands. ``run_all()`` does
the same work in the calling thread (``workbench prepare``, notebooks). A job's function must be idempotent
(the labs' loaders cache per process), so running it again, or calling the loader from a tab, costs nothing.

Example::

    w = WarmUp([Job("model", "loading the model", load)], needs={"Overview": ["model"]})
    w.start(); w.prioritize("Overview"); w.wait("Overview", timeout=60); w.ready("Overview")   # True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Job:
    """One piece of warm-up work: ``key`` (its name), ``label`` (what a waiting tab says), ``fn`` (does it)."""

    key: str
    label: str
    fn: Callable[[], object]
    state: str = "waiting"          # waiting | running | done | failed
    seconds: float = 0.0
    error: str = ""
    started: float | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


class WarmUp:
    """Jobs run in the background in priority order (see the module docstring)."""

    def __init__(self, jobs: list[Job], needs: dict[str, list[str]] | None = None):
        self.jobs = {j.key: j for j in jobs}
        self.needs = {tab: list(keys) for tab, keys in (needs or {}).items()}
        for tab, keys in self.needs.items():
            unknown = [k for k in keys if k not in self.jobs]
            if unknown:
                raise ValueError(f"tab {tab!r} needs unknown warm-up jobs {unknown}")
        self._queue = [j.key for j in jobs]
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    # -- running --------------------------------------------------------------------------------------------
    def start(self) -> WarmUp:
        """Start the background thread (once; later calls do nothing)."""
        with self._cond:
            if self._thread is None:
                self.started_at = time.perf_counter()
                self._thread = threading.Thread(target=self._loop, name="workbench-warmup", daemon=True)
                self._thread.start()
        return self

    def _next(self) -> Job | None:
        with self._cond:
            while self._queue:
                job = self.jobs[self._queue.pop(0)]
                if job.state == "waiting":
                    job.state, job.started = "running", time.perf_counter()
                    return job
            return None

    def _run(self, job: Job) -> None:
        try:
            job.fn()
            state, error = "done", ""
        except Exception as exc:   # a failed job must not stop the others: the tab shows the error itself
            state, error = "failed", f"{type(exc).__name__}: {exc}"
        with self._cond:
            job.state, job.error = state, error
            job.seconds = time.perf_counter() - job.started
            self._cond.notify_all()

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            self._run(job)

    def run_all(self, report: Callable[[Job, int, int], None] | None = None) -> list[Job]:
        """Run every job still waiting in the calling thread, in queue order; ``report(job, done, total)`` after
        each. Returns the jobs."""
        total = len(self.jobs)
        while (job := self._next()) is not None:
            self._run(job)
            if report is not None:
                report(job, sum(j.finished for j in self.jobs.values()), total)
        return list(self.jobs.values())

    def prioritize(self, tab: str) -> None:
        """Move the jobs ``tab`` needs to the front of the queue (in their own order)."""
        with self._cond:
            first = [k for k in self.needs.get(tab, []) if k in self._queue]
            self._queue = first + [k for k in self._queue if k not in first]

    # -- asking ---------------------------------------------------------------------------------------------
    def ready(self, tab: str) -> bool:
        """True once every job ``tab`` needs has finished (done or failed)."""
        return all(self.jobs[k].finished for k in self.needs.get(tab, []))

    def wait(self, tab: str | None = None, timeout: float | None = None) -> bool:
        """Block until ``tab``'s jobs (every job when ``None``) have finished; False on timeout."""
        keys = self.needs.get(tab, []) if tab is not None else list(self.jobs)
        with self._cond:
            return self._cond.wait_for(lambda: all(self.jobs[k].finished for k in keys), timeout)

    def describe(self, tab: str) -> tuple[int, int, list[str]]:
        """(jobs finished, jobs needed, one line per job) for ``tab``, e.g. ``"⏳ loading the model (4.1 s)"``."""
        now = time.perf_counter()
        lines, done = [], 0
        keys = self.needs.get(tab, [])
        for k in keys:
            j = self.jobs[k]
            if j.state == "done":
                done += 1
                lines.append(f"✓ {j.label} ({j.seconds:.1f} s)")
            elif j.state == "failed":
                done += 1
                lines.append(f"✗ {j.label}: {j.error}")
            elif j.state == "running":
                lines.append(f"⏳ {j.label} ({now - j.started:.0f} s so far)")
            else:
                lines.append(f"· {j.label} (queued)")
        return done, len(keys), lines

    def snapshot(self) -> dict:
        """JSON-ready state: per job its state and seconds, per tab whether it is ready, seconds since start."""
        since = None if self.started_at is None else time.perf_counter() - self.started_at
        return {"since_start_s": since,
                "jobs": {k: {"label": j.label, "state": j.state, "seconds": round(j.seconds, 3), "error": j.error}
                         for k, j in self.jobs.items()},
                "tabs": {tab: self.ready(tab) for tab in self.needs},
                "all_ready": all(j.finished for j in self.jobs.values())}


_PROCESS: dict[str, WarmUp] = {}
_PROCESS_LOCK = threading.Lock()


def process_warmup(make: Callable[[], WarmUp]) -> WarmUp:
    """The one `WarmUp` of this process, made by ``make()`` on the first call (thread-safe)."""
    with _PROCESS_LOCK:
        if "dashboard" not in _PROCESS:
            _PROCESS["dashboard"] = make()
        return _PROCESS["dashboard"]


def _load_model() -> None:
    from workbench.models import shared_default_model

    shared_default_model()


#: The job every lab that runs SmolLM2 waits for.
MODEL_JOB = ("model", "loading SmolLM2-135M-Instruct (from the converted-weights cache)", _load_model)
