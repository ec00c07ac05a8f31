"""Overhead of the selector service over calling the rules backend in-process.

    .venv/bin/python bench/selector_overhead.py [--trajectories 1000] [--batch 50] [--rounds 3]

Starts `atlas serve selector` as its own process on 127.0.0.1, then labels the same N trajectories
(the hand-labelled dev set, repeated under new ids) three ways:

* direct: ``Selector.select`` with the rules backend in this process (the baseline);
* unary: ``SelectSteps`` batches of ``--batch``, ``--inflight`` calls in flight at once, labels_only;
* stream: one ``StreamSelectSteps`` call, batches of ``--batch``, labels_only.

The service times include the client's conversion to protobuf. The three run interleaved for
``--rounds`` rounds and each reports its best round (the machine may be shared; best-of filters
out other tenants' bursts). Throughputs are trajectories/s; the
last line is ``ratio=<service/direct>`` (wall-clock throughput) for the streaming path (the one
pipelines use). On a loaded machine two processes (client + server) get more CPU share than one,
which flatters the service: so it also prints the CPU-time ratio (all CPU the service path burns in
client and server vs the direct call), which other tenants cannot skew.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from atlas_selector.client import SelectorClient  # noqa: E402
from atlas_selector.selector import SelectionOptions, Selector  # noqa: E402
from procs import free_port, start_process, stop_process, wait_until  # noqa: E402

from atlas.data.formats import read_file  # noqa: E402
from atlas.data.model import Trajectory  # noqa: E402
from atlas.protoconv import trajectory_to_proto  # noqa: E402
from atlas.selector.v1 import selector_service_pb2 as pb  # noqa: E402

DEV = ROOT / "tests" / "data" / "selector_dev" / "dev.jsonl"


def workload(n: int) -> list[Trajectory]:
    base = list(read_file(DEV, "agentgym"))
    out = []
    for k in range(n):
        t = base[k % len(base)]
        out.append(Trajectory(f"{t.id}-{k}", t.messages, t.source_env, t.task, dict(t.metadata)))
    return out


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the server process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(run: Callable[[], None], pid: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and the server together)."""
    started, cpu, served = time.perf_counter(), time.process_time(), server_cpu(pid)
    run()
    return time.perf_counter() - started, time.process_time() - cpu + server_cpu(pid) - served


def chunks(items: list[Trajectory], size: int) -> Iterator[list[Trajectory]]:
    for k in range(0, len(items), size):
        yield items[k : k + size]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trajectories", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trajectories = workload(args.trajectories)
    n = len(trajectories)

    selector = Selector()
    resolved = selector.resolve(SelectionOptions("rules"))

    def direct() -> None:
        selector.select(trajectories, resolved, labels_only=True)

    tmp = Path(tempfile.mkdtemp(prefix="selector-bench-"))
    port = free_port()
    log = tmp / "selector.log"
    proc = start_process(
        [
            str(Path(sys.executable).parent / "atlas"),
            *(
                "serve",
                "selector",
                "--port",
                str(port),
                "--metrics-port",
                "-1",
                "--data-dir",
                str(tmp / "data"),
            ),
        ],
        log,
    )
    try:
        client = SelectorClient(f"127.0.0.1:{port}", retries=0, timeout=600)
        config = pb.SelectionConfig(backend="rules")

        def ready() -> bool:
            try:
                client.select_steps(pb.SelectStepsRequest(config=config))
                return True
            except Exception:
                return False

        wait_until(ready, timeout=30, proc=proc, log_path=log)

        def unary() -> None:
            def call(chunk: list[Trajectory]) -> int:
                request = pb.SelectStepsRequest(
                    trajectories=[trajectory_to_proto(t) for t in chunk], config=config, labels_only=True
                )
                return len(client.select_steps(request).results)

            with ThreadPoolExecutor(args.inflight) as pool:
                assert sum(pool.map(call, chunks(trajectories, args.batch))) == n

        def stream() -> None:
            def requests() -> Iterator[pb.StreamSelectStepsRequest]:
                for k, chunk in enumerate(chunks(trajectories, args.batch)):
                    yield pb.StreamSelectStepsRequest(
                        config=config if k == 0 else None,
                        trajectories=[trajectory_to_proto(t) for t in chunk],
                        labels_only=True,
                    )

            got = sum(len(reply.results) for reply in client.stream_select_steps(requests()))
            assert got == n

        # Interleaved rounds, best of each: other tenants' load hits all three alike.
        times: dict[str, list[float]] = {"direct": [], "unary": [], "stream": []}
        cpus: dict[str, list[float]] = {"direct": [], "unary": [], "stream": []}
        for _ in range(args.rounds):
            for name, run in (("direct", direct), ("unary", unary), ("stream", stream)):
                wall, cpu = timed(run, proc.pid)
                times[name].append(wall)
                cpus[name].append(cpu)
        client.close()
    finally:
        stop_process(proc)

    direct_s, unary_s, stream_s = (min(times[name]) for name in ("direct", "unary", "stream"))
    direct_c, unary_c, stream_c = (min(cpus[name]) for name in ("direct", "unary", "stream"))
    print(
        f"trajectories={n} batch={args.batch} inflight={args.inflight} rounds={args.rounds}, best round each,"
        " interleaved"
    )
    print(f"direct   {n / direct_s:9.1f} traj/s  ({direct_s:.3f} s)")
    print(f"unary    {n / unary_s:9.1f} traj/s  ({unary_s:.3f} s)  ratio_unary={direct_s / unary_s:.3f}")
    print(f"stream   {n / stream_s:9.1f} traj/s  ({stream_s:.3f} s)  ratio_stream={direct_s / stream_s:.3f}")
    print(
        f"cpu seconds (client + server): direct {direct_c:.3f}, unary {unary_c:.3f} "
        f"(cpu_ratio_unary={direct_c / unary_c:.3f}), stream {stream_c:.3f} "
        f"(cpu_ratio_stream={direct_c / stream_c:.3f})"
    )
    # Each round's own ratio, then the median: neighbouring runs share the machine's state, so this
    # is steadier under load than best-of-each.
    per_round = {
        name: statistics.median(d / c for d, c in zip(cpus["direct"], cpus[name], strict=True))
        for name in ("unary", "stream")
    }
    print(
        f"cpu ratio, median of per-round ratios: unary {per_round['unary']:.3f}, "
        f"stream {per_round['stream']:.3f}"
    )
    print(
        f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus"
    )
    print(f"ratio={direct_s / stream_s:.3f}")


if __name__ == "__main__":
    main()
