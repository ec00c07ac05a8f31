"""Selection-job throughput with the rules backend on file:// and s3:// (moto_server).

    .venv/bin/python bench/selector_jobs.py [--trajectories 5000]

Runs the job runner in-process (``SelectionJobs``: read, select, publish with a manifest) on a local
dataset and on the same dataset in a real S3-protocol server (moto_server on 127.0.0.1), and prints
trajectories/s for each; the last line is ``file_traj_per_s=... s3_traj_per_s=...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from atlas_selector.jobs import SelectionJobs, SelectionJobSpec  # noqa: E402
from atlas_selector.selector import Selector  # noqa: E402
from conftest import TEST_AWS_ENV  # noqa: E402
from procs import free_port, start_process, stop_process, wait_until  # noqa: E402

from atlas import storage  # noqa: E402
from atlas.data.formats import read_file  # noqa: E402
from atlas.data.model import Trajectory  # noqa: E402
from atlas.jobs import JobState, JobStore  # noqa: E402
from atlas.storage import StorageOptions, StorageRoots  # noqa: E402

DEV = ROOT / "tests" / "data" / "selector_dev" / "dev.jsonl"


def workload(n: int) -> list[Trajectory]:
    base = list(read_file(DEV, "agentgym"))
    return [
        Trajectory(f"{t.id}-{k}", t.messages, t.source_env, t.task)
        for k in range(n)
        for t in [base[k % len(base)]]
    ]


def run_job(jobs: SelectionJobs, input_uri: str, output_uri: str) -> float:
    started = time.perf_counter()
    job_id = jobs.create(SelectionJobSpec(input_uri, output_uri))
    for job in jobs.store.watch(job_id, timeout=600):
        if job.state.finished:
            assert job.state is JobState.SUCCEEDED, job.error
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trajectories", type=int, default=5000)
    args = parser.parse_args()
    n = args.trajectories
    tmp = Path(tempfile.mkdtemp(prefix="selector-jobs-"))
    trajectories = workload(n)
    storage.write_trajectories(str(tmp / "in"), trajectories, "agentgym")

    os.environ.update(TEST_AWS_ENV)
    port = free_port()
    moto = start_process(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        tmp / "moto.log",
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: urllib.request.urlopen(endpoint, timeout=1).status == 200, 30, moto, tmp / "moto.log"
        )
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
        options = StorageOptions(s3_endpoint_url=endpoint)
        storage.write_trajectories("s3://bench/in", trajectories, "agentgym", options=options)
        roots = StorageRoots([str(tmp), "s3://bench"])
        jobs = SelectionJobs(JobStore(tmp / "selector.sqlite", "selection"), Selector(), roots, options)
        file_s = run_job(jobs, str(tmp / "in"), str(tmp / "out"))
        s3_s = run_job(jobs, "s3://bench/in", "s3://bench/out")
        jobs.stop()
    finally:
        stop_process(moto)
    print(f"trajectories={n}")
    print(f"file://  {n / file_s:8.1f} traj/s ({file_s:.2f} s)")
    print(f"s3://    {n / s3_s:8.1f} traj/s ({s3_s:.2f} s)")
    print(
        f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus"
    )
    print(f"file_traj_per_s={n / file_s:.1f} s3_traj_per_s={n / s3_s:.1f}")


if __name__ == "__main__":
    main()
