"""Overhead of the selector service over calling the rules backend in-process.

    .venv/bin/python bench/selector_overhead.py [--trajectories 1000] [--batch 256] [--first-batch 16]
                                                [--unary-batch 50] [--inflight 4] [--rounds 60]
                                                [--wire columns|messages] [--reply columns|results]
                                                [--shared-messages] [--no-pin]

Starts `atlas serve selector` as its own process on 127.0.0.1, then labels the same N trajectories
(the hand-labelled dev set repeated under new ids, each copy with its own message objects, as
trajectories read from a file have; ``--shared-messages`` lets the copies share them) three ways:

* direct: ``Selector.select`` with the rules backend in this process (the baseline);
* unary: ``SelectSteps`` batches of ``--unary-batch``, ``--inflight`` calls in flight at once,
  labels_only;
* stream: one ``StreamSelectSteps`` call, labels_only, its requests built by
  ``atlas_selector.client.stream_requests`` as ``atlas select --server`` builds them: ``--first-batch``
  trajectories, then twice as many each time up to ``--batch``.

The service sides send the trajectories as ``--wire``: TrajectoryColumns (default; what
``atlas select --server`` sends) or repeated Trajectory, and their times include the client's
conversion to protobuf. They get the labels back as ``--reply``: SelectionResultColumns (default,
``reply_in_columns``; what ``atlas select --server`` asks for) or a SelectionResult each.

The three sides run back to back for ``--rounds`` rounds, in an order that rotates from round to
round; a side's throughput is over all its rounds. Last line: ``ratio=<service/direct>``
(wall-clock throughput) for the streaming path (the one pipelines use). It also prints the
ratio's standard error, the median of the rounds' own ratios, and the CPU-time ratio (all CPU the
service path burns in client and server vs the direct call): two processes may get more of a
loaded machine than one, which would flatter the wall-clock ratio.

The wall-clock ratio compares two processes at different moments, and this VM's speed changes
within a second: the same work takes 0.7 s in one round and 1.1 s in the next, and the rounds' own
ratios spread by 12-26% (standard deviation). Only many interleaved rounds average that out: 60
give a standard error of 1.7-3.1% (measured), which the bench prints beside the ratio.

The paired ratio takes that noise out: the server's own ``atlas_selector_select_seconds_total``
(time inside ``Selector.select``, the same call the direct side makes) over the stream's
wall-clock time, both measured during the same stream. It is the share of the stream's time that is
selection; the rest is what the service adds (gRPC, messages, conversions, the client). Its blind
spot: whatever slows the selection itself in the server (a collection its decoding deferred, caches
its conversions evicted) counts as selection.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from atlas_selector.client import SelectorClient, stream_requests  # noqa: E402
from atlas_selector.selector import SelectionOptions, Selector  # noqa: E402
from procs import free_port, start_process, stop_process, wait_until  # noqa: E402

from atlas.data.formats import read_file  # noqa: E402
from atlas.data.model import Message, Trajectory  # noqa: E402
from atlas.protoconv import trajectories_to_columns, trajectory_to_proto  # noqa: E402
from atlas.selector.v1 import selector_service_pb2 as pb  # noqa: E402

DEV = ROOT / "tests" / "data" / "selector_dev" / "dev.jsonl"


def workload(n: int, *, shared: bool = False) -> list[Trajectory]:
    """The dev set repeated to ``n`` trajectories under new ids.

    Each copy has its own Message and string objects, as ``n`` trajectories read from a file have
    (and as the service's decoded ones have). ``shared``: the copies share the originals' messages,
    so the direct side scans the same 23 trajectories' text over and over, a cache-resident set no
    real caller has (this bench's workload until the tenth pass; bench/README.md measures it).
    """
    base = list(read_file(DEV, "agentgym"))
    out = []
    for k in range(n):
        t = base[k % len(base)]
        messages = (
            t.messages
            if shared
            else [Message(m.role, m.content.encode().decode(), m.train) for m in t.messages]
        )
        out.append(Trajectory(f"{t.id}-{k}", messages, t.source_env, t.task, dict(t.metadata)))
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


def pin(pid: int, core: int) -> None:
    """Every thread of process ``pid`` onto ``core`` (threads they start later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), {core})


def select_seconds(metrics_port: int) -> float:
    """The server's atlas_selector_select_seconds_total for the rules backend, read from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        body = reply.read().decode()
    found = re.search(r'^atlas_selector_select_seconds_total\{backend="rules"\} (\S+)$', body, re.MULTILINE)
    if found is None:
        raise SystemExit("the server's /metrics has no atlas_selector_select_seconds_total for rules")
    return float(found.group(1))


def chunks(items: list[Trajectory], size: int) -> Iterator[list[Trajectory]]:
    for k in range(0, len(items), size):
        yield items[k : k + size]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trajectories", type=int, default=1000)
    parser.add_argument(
        "--batch", type=int, default=256, help="largest stream request (atlas select --server's default)"
    )
    parser.add_argument("--first-batch", type=int, default=16, help="first stream request's size")
    parser.add_argument("--unary-batch", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=4)
    parser.add_argument(
        "--wire",
        choices=("columns", "messages"),
        default="columns",
        help="how the client sends trajectories: TrajectoryColumns (the pipeline way, the default) or "
        "repeated Trajectory (one Message per turn)",
    )
    parser.add_argument(
        "--reply",
        choices=("columns", "results"),
        default="columns",
        help="how the service answers: SelectionResultColumns (reply_in_columns, the default) or a "
        "SelectionResult per trajectory",
    )
    parser.add_argument(
        "--shared-messages",
        action="store_true",
        help="let the copies of the dev set share their messages (the workload before the tenth pass)",
    )
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="leave the two processes to the scheduler instead of swapping them between two cores "
        "from round to round",
    )
    args = parser.parse_args()
    trajectories = workload(args.trajectories, shared=args.shared_messages)
    n = len(trajectories)

    def wire(chunk: list[Trajectory]) -> dict[str, Any]:
        if args.wire == "columns":
            return {"columns": trajectories_to_columns(chunk)}
        return {"trajectories": [trajectory_to_proto(t) for t in chunk]}

    in_columns = args.reply == "columns"

    def answered(reply: pb.SelectStepsResponse | pb.StreamSelectStepsResponse) -> int:
        return len(reply.results) + len(reply.result_columns.trajectory_ids)

    selector = Selector()
    resolved = selector.resolve(SelectionOptions("rules"))

    def direct() -> None:
        selector.select(trajectories, resolved, labels_only=True)

    tmp = Path(tempfile.mkdtemp(prefix="selector-bench-"))
    port, metrics_port = free_port(), free_port()
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
                str(metrics_port),
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
                    config=config, labels_only=True, reply_in_columns=in_columns, **wire(chunk)
                )
                return answered(client.select_steps(request))

            with ThreadPoolExecutor(args.inflight) as pool:
                assert sum(pool.map(call, chunks(trajectories, args.unary_batch))) == n

        def stream() -> None:
            def requests() -> Iterator[pb.StreamSelectStepsRequest]:
                for _chunk, request in stream_requests(
                    trajectories,
                    config,
                    batch=args.batch,
                    first_batch=args.first_batch,
                    columns=args.wire == "columns",
                    reply_in_columns=in_columns,
                ):
                    yield request

            got = sum(answered(reply) for reply in client.stream_select_steps(requests()))
            assert got == n

        # Interleaved rounds: each round runs the three sides back to back, in an order that rotates
        # from round to round, so a slow drift of the machine's speed (seconds long on this VM) hits
        # all three alike and each round's own ratio compares like with like.
        sides: list[tuple[str, Callable[[], None]]] = [
            ("direct", direct),
            ("unary", unary),
            ("stream", stream),
        ]
        times: dict[str, list[float]] = {"direct": [], "unary": [], "stream": []}
        cpus: dict[str, list[float]] = {"direct": [], "unary": [], "stream": []}
        selecting = 0.0  # the server's seconds inside Selector.select during the stream side
        # The two cores of this VM are not equally fast, and which is faster changes over minutes
        # (one ran 4-8% slower than the other in one run, 3% faster in the next). Left alone, the
        # server may sit on one and this process on the other for a whole run, and the ratio
        # measures the cores. Swapped every round, each side spends half its rounds on each core.
        cores = sorted(os.sched_getaffinity(0))[:2]
        pinned = not args.no_pin and len(cores) == 2
        for k in range(args.rounds):
            if pinned:
                pin(proc.pid, cores[k % 2])
                pin(os.getpid(), cores[1 - k % 2])
            for name, run in sides[k % 3 :] + sides[: k % 3]:
                before = select_seconds(metrics_port) if name == "stream" else 0.0
                wall, cpu = timed(run, proc.pid)
                if name == "stream":
                    selecting += select_seconds(metrics_port) - before
                times[name].append(wall)
                cpus[name].append(cpu)
        client.close()
    finally:
        stop_process(proc)

    def ratio(samples: dict[str, list[float]], name: str) -> float:
        """direct / service over all rounds: the same trajectories, interleaved, so every stretch of
        the machine's speed is shared by both sides (its speed changes within a second on this VM,
        faster than a round: only many rounds average it out)."""
        return sum(samples["direct"]) / sum(samples[name])

    def ratio_error(samples: dict[str, list[float]], name: str) -> float:
        """The standard error of ``ratio`` (a ratio estimator's, from the rounds' pairs): how far
        this run's ratio may be from the one many runs would average to."""
        direct, service = samples["direct"], samples[name]
        if len(direct) < 2:
            return math.nan
        r = sum(direct) / sum(service)
        spread = sum((d - r * x) ** 2 for d, x in zip(direct, service, strict=True)) / (len(direct) - 1)
        return math.sqrt(spread / len(direct)) / statistics.mean(service)

    def median_ratio(samples: dict[str, list[float]], name: str) -> float:
        return statistics.median(d / x for d, x in zip(samples["direct"], samples[name], strict=True))

    print(
        f"trajectories={n} stream batches {args.first_batch}..{args.batch}, unary batch={args.unary_batch}"
        f" inflight={args.inflight}, rounds={args.rounds} wire={args.wire} reply={args.reply}, interleaved,"
        f" {'cores swapped every round' if pinned else 'not pinned'}"
    )
    for name in ("direct", "unary", "stream"):
        walls = times[name]
        line = f"{name:7s} {n * len(walls) / sum(walls):7.1f} traj/s (best round {n / min(walls):7.1f})"
        if name != "direct":
            line += (
                f"  ratio_{name}={ratio(times, name):.3f} +- {ratio_error(times, name):.3f} (standard error;"
                f" median of rounds {median_ratio(times, name):.3f})"
            )
        print(line)
    print(
        "cpu seconds per round (client + server): "
        + ", ".join(f"{name} {statistics.mean(cpus[name]):.3f}" for name in ("direct", "unary", "stream"))
        + f"; cpu_ratio_unary={ratio(cpus, 'unary'):.3f} cpu_ratio_stream={ratio(cpus, 'stream'):.3f}"
    )
    print(
        f"paired_ratio_stream={selecting / sum(times['stream']):.3f} (the server's time inside "
        f"Selector.select, {selecting / args.rounds * 1000:.0f} ms a round, over the stream's wall-clock "
        f"time, {statistics.mean(times['stream']) * 1000:.0f} ms a round)"
    )
    print(
        f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus"
    )
    print(f"ratio={ratio(times, 'stream'):.3f}")


if __name__ == "__main__":
    main()
