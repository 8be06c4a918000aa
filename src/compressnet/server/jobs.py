"""Background jobs with progress, run off the event loop in a small, bounded worker pool."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from compressnet.server.limits import TimeLimit

ProgressFn = Callable[[float, str], None]


@dataclass
class Job:
    id: str
    state: str = "queued"  # queued, running, done, failed
    progress: float = 0.0
    stage: str = "queued"
    result: Any = None
    error: str | None = None
    status_code: int = 200
    created: float = field(default_factory=time.monotonic)
    future: Future | None = None

    def public(self) -> dict:
        out = {"id": self.id, "state": self.state, "progress": round(self.progress, 3), "stage": self.stage}
        if self.state == "done":
            out["result"] = self.result
        if self.state == "failed":
            out["error"] = self.error
            out["status_code"] = self.status_code
        return out


class JobRunner:
    """Runs model work in ``workers`` threads (more requests queue); keeps finished jobs for
    ``keep_seconds``; a job's every progress step checks its ``time_limit`` (seconds from
    when it starts running, 0: none) and stops it past that."""

    def __init__(self, workers: int = 2, keep_seconds: float = 600.0, max_jobs: int = 100,
                 time_limit: float = 0.0) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compressnet")
        self.time_limit = time_limit
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.keep_seconds = keep_seconds
        self.max_jobs = max_jobs

    def _prune(self) -> None:
        now = time.monotonic()
        for job_id, job in list(self.jobs.items()):
            if job.state in ("done", "failed") and now - job.created > self.keep_seconds:
                del self.jobs[job_id]

    def submit(self, work: Callable[[ProgressFn], Any],
               on_error: Callable[[Exception], tuple[int, str]]) -> Job:
        with self.lock:
            self._prune()
            if sum(j.state in ("queued", "running") for j in self.jobs.values()) >= self.max_jobs:
                raise OverflowError("too many jobs in progress; try again shortly")
            job = Job(uuid.uuid4().hex)
            self.jobs[job.id] = job

        limit = TimeLimit(self.time_limit)

        def progress(fraction: float, stage: str) -> None:
            limit.check()
            job.progress, job.stage = fraction, stage

        def run() -> None:
            job.state = "running"
            limit.start()
            try:
                job.result = work(progress)
                job.progress, job.stage, job.state = 1.0, "done", "done"
            except Exception as exc:  # reported to the client, never raised into the server
                job.status_code, job.error = on_error(exc)
                job.state = "failed"

        job.future = self.pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
