"""Persistent job resources (selection, training, evaluation jobs) in SQLite.

Every service keeps its jobs here (embedded default: ``<data_dir>/<service>.sqlite``),
so a job's state survives a restart of the service. The store owns the lifecycle
rules (which transitions are legal, which timestamps they set), paging, and what
happens to jobs that were RUNNING when the service died: ``recover_interrupted``
marks them FAILED or puts them back in the queue, never leaves them RUNNING forever.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class JobState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


_ALLOWED = {
    JobState.QUEUED: {JobState.RUNNING, JobState.CANCELLED, JobState.FAILED},
    JobState.RUNNING: {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED},
}


@dataclass
class JobError:
    code: str  # a grpc.StatusCode name, e.g. "INVALID_ARGUMENT"
    message: str
    field_path: str = ""


@dataclass
class Job:
    """One job resource: ``spec`` is what the caller asked for, ``progress``/``result`` the runner's."""

    id: str
    kind: str
    state: JobState
    spec: dict[str, Any]
    create_time: float
    update_time: float
    start_time: float | None = None
    end_time: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: JobError | None = None
    cancel_requested: bool = False


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    start_time REAL,
    end_time REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_kind_time ON jobs (kind, create_time DESC, id DESC);
"""


def _encode_token(create_time: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([create_time, job_id]).encode()).decode()


def _decode_token(token: str) -> tuple[float, str]:
    try:
        create_time, job_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return float(create_time), str(job_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidArgument("not a page token returned by this service", field_path="page_token") from exc


class JobStore:
    """Jobs of one kind ("selection", "training", "evaluation") in one SQLite file; thread-safe."""

    def __init__(self, path: str | Path, kind: str) -> None:
        self.kind = kind
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False

    def close(self) -> None:
        """Close the database; open watches end with UNAVAILABLE (the service is stopping)."""
        with self._lock:
            self._closed = True
            self._db.close()
            self._changed.notify_all()

    def create(self, spec: dict[str, Any], *, job_id: str | None = None) -> Job:
        now = time.time()
        job_id = job_id or f"{self.kind[:3]}-{uuid.uuid4().hex[:12]}"
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, kind, state, spec, create_time, update_time)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (job_id, self.kind, JobState.QUEUED.value, json.dumps(spec), now, now),
                )
            except sqlite3.IntegrityError as exc:
                raise InvalidArgument(f"a job with id {job_id!r} exists", field_path="id") from exc
            self._changed.notify_all()
            return self._get_locked(job_id)

    def get(self, job_id: str) -> Job:
        with self._lock:
            return self._get_locked(job_id)

    def list_jobs(
        self, *, page_size: int = 0, page_token: str = "", state: JobState | None = None
    ) -> tuple[list[Job], str]:
        """Newest first. Returns the page and the token of the next one ("" on the last page)."""
        if page_size < 0:
            raise InvalidArgument(f"must not be negative, got {page_size}", field_path="page_size")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        query = "SELECT * FROM jobs WHERE kind = ?"
        params: list[Any] = [self.kind]
        if state is not None:
            query += " AND state = ?"
            params.append(state.value)
        if page_token:
            create_time, job_id = _decode_token(page_token)
            query += " AND (create_time < ? OR (create_time = ? AND id < ?))"
            params += [create_time, create_time, job_id]
        query += " ORDER BY create_time DESC, id DESC LIMIT ?"
        params.append(size + 1)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        jobs = [self._from_row(row) for row in rows[:size]]
        next_token = _encode_token(jobs[-1].create_time, jobs[-1].id) if len(rows) > size else ""
        return jobs, next_token

    def transition(self, job_id: str, state: JobState, *, error: JobError | None = None) -> Job:
        """Move a job to ``state``; illegal moves (e.g. out of a finished state) raise FailedPrecondition."""
        with self._lock:
            job = self._get_locked(job_id)
            if state not in _ALLOWED.get(job.state, set()):
                raise FailedPrecondition(f"job {job_id} is {job.state}; it cannot become {state}")
            now = time.time()
            start_time = (
                now if state is JobState.RUNNING else (None if state is JobState.QUEUED else job.start_time)
            )
            end_time = now if state.finished else None
            self._db.execute(
                "UPDATE jobs SET state = ?, error = ?, update_time = ?, start_time = ?, end_time = ?"
                " WHERE id = ?",
                (
                    state.value,
                    json.dumps(error.__dict__) if error else None,
                    now,
                    start_time,
                    end_time,
                    job_id,
                ),
            )
            self._changed.notify_all()
            return self._get_locked(job_id)

    def update(
        self, job_id: str, *, progress: dict[str, Any] | None = None, result: dict[str, Any] | None = None
    ) -> Job:
        """Record progress (merged into the existing progress) and/or the result of a job."""
        with self._lock:
            job = self._get_locked(job_id)
            merged = {**job.progress, **(progress or {})}
            self._db.execute(
                "UPDATE jobs SET progress = ?, result = ?, update_time = ? WHERE id = ?",
                (
                    json.dumps(merged),
                    json.dumps(result if result is not None else job.result),
                    time.time(),
                    job_id,
                ),
            )
            self._changed.notify_all()
            return self._get_locked(job_id)

    def cancel(self, job_id: str) -> Job:
        """Idempotent. A queued job is cancelled at once; a running one is flagged for its runner to stop;
        a finished job is returned unchanged."""
        with self._lock:
            job = self._get_locked(job_id)
            if job.state.finished:
                return job
            now = time.time()
            if job.state is JobState.QUEUED:
                self._db.execute(
                    "UPDATE jobs SET state = ?, cancel_requested = 1, update_time = ?, end_time = ?"
                    " WHERE id = ?",
                    (JobState.CANCELLED.value, now, now, job_id),
                )
            else:
                self._db.execute(
                    "UPDATE jobs SET cancel_requested = 1, update_time = ? WHERE id = ?", (now, job_id)
                )
            self._changed.notify_all()
            return self._get_locked(job_id)

    def recover_interrupted(self, *, requeue: bool) -> list[Job]:
        """At service start: jobs left RUNNING by a process that died are re-queued or failed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE kind = ? AND state = ?", (self.kind, JobState.RUNNING.value)
            ).fetchall()
        recovered = []
        for (job_id,) in rows:
            if requeue:
                recovered.append(self.transition(job_id, JobState.QUEUED))
            else:
                error = JobError("ABORTED", "the service stopped while this job was running")
                recovered.append(self.transition(job_id, JobState.FAILED, error=error))
        return recovered

    def watch(self, job_id: str, *, timeout: float | None = None) -> Iterator[Job]:
        """Yield the job now and after every change until it finishes (or ``timeout`` passes).

        An unknown id raises NotFound here, before the first item, so a streaming RPC fails
        with a status instead of an empty stream. Changes made through this store instance wake
        watchers at once; the 1 s poll also picks up changes made by other processes writing
        the same database file.
        """
        self.get(job_id)
        return self._watch(job_id, timeout)

    def _watch(self, job_id: str, timeout: float | None) -> Iterator[Job]:
        deadline = None if timeout is None else time.monotonic() + timeout
        last_update = -1.0
        while True:
            with self._lock:
                job = self._get_locked(job_id)
                if job.update_time == last_update and not job.state.finished:
                    self._changed.wait(timeout=1.0)
                    job = self._get_locked(job_id)
            if job.update_time != last_update:
                last_update = job.update_time
                yield job
            if job.state.finished or (deadline is not None and time.monotonic() >= deadline):
                return

    def _get_locked(self, job_id: str) -> Job:
        if self._closed:
            raise Unavailable(f"the {self.kind} service is stopping; retry the call on a running one")
        if not job_id:
            raise InvalidArgument("required: the job id", field_path="id")
        row = self._db.execute("SELECT * FROM jobs WHERE id = ? AND kind = ?", (job_id, self.kind)).fetchone()
        if row is None:
            raise NotFound(f"no {self.kind} job with id {job_id!r}", field_path="id")
        return self._from_row(row)

    @staticmethod
    def _from_row(values: sqlite3.Row) -> Job:
        error = json.loads(values["error"]) if values["error"] else None
        return Job(
            id=values["id"],
            kind=values["kind"],
            state=JobState(values["state"]),
            spec=json.loads(values["spec"]),
            create_time=values["create_time"],
            update_time=values["update_time"],
            start_time=values["start_time"],
            end_time=values["end_time"],
            progress=json.loads(values["progress"]),
            result=json.loads(values["result"]),
            error=JobError(**error) if error else None,
            cancel_requested=bool(values["cancel_requested"]),
        )
