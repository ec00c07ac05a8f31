"""``atlas up`` / ``atlas down``: the three services running in the background for a user.

``atlas up`` starts selector, trainer and evaluator detached (each in its own session, logs in
``DATA_DIR/logs/``), waits for each to be ready, writes pids and addresses to ``DATA_DIR/fleet.json``
and prints the addresses. ``atlas down`` reads that file and stops each service with SIGTERM (SIGKILL
after a grace period); a pid that is gone or now belongs to another program is reported as stale and
left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

FLEET_FILE = "fleet.json"
DEFAULT_PORTS = {"selector": (50051, 9101), "trainer": (50052, 9102), "evaluator": (50053, 9103)}


def register(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up",
        help="start the selector, trainer and evaluator in the background",
        description="Start the three services detached on 127.0.0.1 (gRPC 50051-50053, metrics 9101-9103, "
        "or free ports with --free-ports), wait until each is ready, write pids and addresses to "
        "DATA_DIR/fleet.json and logs to DATA_DIR/logs/. Settings come from ATLAS_<SERVICE>_* variables. "
        "Stop them with `atlas down`.",
    )
    up.add_argument("--data-dir", default="atlas-data", help="job state, logs and the file:// object store")
    up.add_argument("--free-ports", action="store_true", help="let the OS pick free ports")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each service")
    up.set_defaults(func=cmd_up)

    down = subparsers.add_parser(
        "down",
        help="stop the services `atlas up` started",
        description="Stop the services listed in DATA_DIR/fleet.json with SIGTERM (they finish in-flight "
        "calls; running training jobs go back to QUEUED), SIGKILL after --grace seconds.",
    )
    down.add_argument("--data-dir", default="atlas-data")
    down.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL")
    down.set_defaults(func=cmd_down)


def cmd_up(args: argparse.Namespace) -> int:
    from atlas.errors import FailedPrecondition
    from atlas.loop.fleet import Fleet

    data_dir = Path(args.data_dir).resolve()
    state_path = data_dir / FLEET_FILE
    running = [name for name, info in _read_state(state_path).items() if _is_our_service(info, name)]
    if running:
        raise FailedPrecondition(
            f"{', '.join(running)} already running from {state_path}; "
            f"run `atlas down --data-dir {args.data_dir}`"
        )
    ports = {} if args.free_ports else {name: p for name, (p, _) in DEFAULT_PORTS.items()}
    metrics = {} if args.free_ports else {name: m for name, (_, m) in DEFAULT_PORTS.items()}
    fleet = Fleet(data_dir, ports=ports, metrics_ports=metrics, ready_timeout=args.timeout)
    fleet.start()  # stops what it started and raises if one service fails
    state = fleet.describe()
    state["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp = state_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(state_path)
    for name, info in state["services"].items():
        print(
            f"{name:<9} {info['address']:<16} metrics http://127.0.0.1:{info['metrics_port']}/metrics  "
            f"pid {info['pid']}  log {info['log']}"
        )
    print(f"state in {state_path}; stop with `atlas down --data-dir {args.data_dir}`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from atlas.loop.fleet import signal_group

    data_dir = Path(args.data_dir).resolve()
    state_path = data_dir / FLEET_FILE
    services = _read_state(state_path)
    if not services:
        print(f"nothing to stop: no {state_path}")
        return 0
    live = {name: int(info["pid"]) for name, info in services.items() if _is_our_service(info, name)}
    for name in services:
        if name not in live:
            print(f"{name:<9} stale (pid {services[name].get('pid')} is not running it)")
    for pid in live.values():
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.grace
    while any(_alive(pid) for pid in live.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, pid in live.items():
        killed = _alive(pid)
        if killed:
            signal_group(pid, signal.SIGKILL)
        print(f"{name:<9} stopped (pid {pid}{', SIGKILL after the grace period' if killed else ''})")
    state_path.unlink(missing_ok=True)
    return 0


def _read_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        services: dict[str, dict[str, Any]] = json.loads(path.read_text())["services"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}
    return services


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_our_service(info: dict[str, Any], name: str) -> bool:
    """The pid in fleet.json is alive and still runs ``atlas serve <name>`` (pids get recycled)."""
    pid = int(info.get("pid") or 0)
    if pid <= 0 or not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc to tell: trust the file
    words = [a.decode(errors="replace") for a in argv]
    return "serve" in words and name in words


def main(argv: list[str] | None = None) -> int:
    """``python -m atlas.loop.cli up|down``: the same commands without the rest of ``atlas``."""
    from atlas.errors import AtlasError

    parser = argparse.ArgumentParser(prog="atlas")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except AtlasError as exc:
        print(f"atlas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
