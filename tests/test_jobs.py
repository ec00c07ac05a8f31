"""The SQLite job store: lifecycle rules, paging, cancellation, restart recovery, watch."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from atlas.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from atlas.jobs import JobError, JobState, JobStore


@pytest.fixture()
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "jobs.sqlite", "selection")


def test_lifecycle_sets_timestamps(store: JobStore) -> None:
    job = store.create({"input": "s3://b/in"})
    assert job.state is JobState.QUEUED and job.start_time is None and job.spec == {"input": "s3://b/in"}
    running = store.transition(job.id, JobState.RUNNING)
    assert running.start_time is not None and running.end_time is None
    store.update(job.id, progress={"done": 3})
    done = store.update(job.id, progress={"total": 10}, result={"output": "s3://b/out"})
    assert done.progress == {"done": 3, "total": 10} and done.result == {"output": "s3://b/out"}
    finished = store.transition(job.id, JobState.SUCCEEDED)
    assert finished.end_time is not None and finished.end_time >= finished.start_time  # type: ignore[operator]
    with pytest.raises(FailedPrecondition):
        store.transition(job.id, JobState.RUNNING)


def test_state_survives_reopening(tmp_path: Path) -> None:
    first = JobStore(tmp_path / "jobs.sqlite", "training")
    job = first.create({"lr": 1e-4})
    first.transition(job.id, JobState.RUNNING)
    first.close()
    again = JobStore(tmp_path / "jobs.sqlite", "training")
    assert again.get(job.id).state is JobState.RUNNING
    # Kinds do not see each other's jobs.
    with pytest.raises(NotFound):
        JobStore(tmp_path / "jobs.sqlite", "evaluation").get(job.id)


def test_interrupted_jobs_are_failed_or_requeued(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite", "training")
    a, b = store.create({}), store.create({})
    store.transition(a.id, JobState.RUNNING)
    store.transition(b.id, JobState.RUNNING)
    (failed,) = [j for j in store.recover_interrupted(requeue=False) if j.id == a.id]
    assert failed.state is JobState.FAILED and failed.error is not None and "stopped" in failed.error.message
    assert store.get(b.id).state is JobState.FAILED
    c = store.create({})
    store.transition(c.id, JobState.RUNNING)
    (requeued,) = store.recover_interrupted(requeue=True)
    assert requeued.id == c.id and requeued.state is JobState.QUEUED and requeued.start_time is None


def test_cancel_is_idempotent(store: JobStore) -> None:
    queued = store.create({})
    assert store.cancel(queued.id).state is JobState.CANCELLED
    assert store.cancel(queued.id).state is JobState.CANCELLED
    running = store.create({})
    store.transition(running.id, JobState.RUNNING)
    flagged = store.cancel(running.id)
    assert flagged.state is JobState.RUNNING and flagged.cancel_requested
    store.transition(running.id, JobState.CANCELLED)
    done = store.create({})
    store.transition(done.id, JobState.RUNNING)
    store.transition(done.id, JobState.SUCCEEDED)
    assert store.cancel(done.id).state is JobState.SUCCEEDED
    with pytest.raises(NotFound):
        store.cancel("sel-nope")


def test_paging_is_newest_first_and_complete(store: JobStore) -> None:
    ids = [store.create({"n": i}).id for i in range(7)]
    store.transition(ids[2], JobState.RUNNING)
    seen, token = [], ""
    while True:
        page, token = store.list_jobs(page_size=3, page_token=token)
        assert len(page) <= 3
        seen += [job.id for job in page]
        if not token:
            break
    assert seen == list(reversed(ids))
    running, _ = store.list_jobs(state=JobState.RUNNING)
    assert [job.id for job in running] == [ids[2]]


def test_bad_paging_arguments_name_the_field(store: JobStore) -> None:
    with pytest.raises(InvalidArgument) as caught:
        store.list_jobs(page_token="not-a-token")
    assert caught.value.field_path == "page_token"
    with pytest.raises(InvalidArgument) as caught:
        store.list_jobs(page_size=-1)
    assert caught.value.field_path == "page_size"
    assert len(store.list_jobs(page_size=5000)[0]) == 0  # clamped, not an error


def test_watch_yields_each_change_until_finished(store: JobStore) -> None:
    job = store.create({})

    def run() -> None:
        time.sleep(0.1)
        store.transition(job.id, JobState.RUNNING)
        time.sleep(0.05)
        store.update(job.id, progress={"step": 1})
        time.sleep(0.05)
        store.transition(job.id, JobState.FAILED, error=JobError("INTERNAL", "out of memory"))

    worker = threading.Thread(target=run)
    worker.start()
    states = [(j.state, j.progress.get("step")) for j in store.watch(job.id, timeout=10)]
    worker.join()
    assert states[0] == (JobState.QUEUED, None)
    assert states[-1][0] is JobState.FAILED
    assert (JobState.RUNNING, 1) in states


def test_missing_or_unknown_ids_fail_before_any_work(store: JobStore) -> None:
    with pytest.raises(InvalidArgument) as caught:
        store.get("")
    assert caught.value.field_path == "id"
    with pytest.raises(InvalidArgument):
        store.cancel("")
    with pytest.raises(NotFound):
        store.watch("sel-unknown")  # raised by the call itself, not by the first next()


def test_closing_the_store_ends_open_watches_with_unavailable(store: JobStore) -> None:
    job = store.create({"x": 1})
    store.transition(job.id, JobState.RUNNING)
    seen: list[JobState] = []
    errors: list[Exception] = []

    def watch() -> None:
        try:
            for item in store.watch(job.id):
                seen.append(item.state)
        except Exception as exc:  # what the servicer would turn into a status
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    store.close()  # the service stopping while a client watches a running job
    watcher.join(timeout=5)
    assert not watcher.is_alive()
    assert seen == [JobState.RUNNING]
    assert len(errors) == 1 and isinstance(errors[0], Unavailable), errors
    assert "stopping" in str(errors[0])
