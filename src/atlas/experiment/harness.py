"""Run an experiment: one expert dataset, every condition x seed through the real services, a report.

Layout under the output directory (everything an experiment writes, so it can be moved or resumed):

    experiment.json                 the config and its fingerprint (resume refuses a different one)
    fleet/                          the services' data dir: job stores, logs (fleet/logs/*.log)
    models/                         the tiny model, when the config asks for it
    data/experts/ + experts.json    the ONE expert dataset every trained condition learns from
    runs/<condition>/seed-<s>/      selected/ (masked dataset), train/ (adapter, metrics), eval/
                                    stages.json (each finished stage), record.json (the finished run)
    results.json, results.md, results.png

A run is finished when its ``record.json`` exists (written atomically, last). A rerun skips
finished runs and finished stages of unfinished ones; a stage that was interrupted is redone from a
clean output (its partial output is deleted and any job it left queued or running is cancelled).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas.errors import FailedPrecondition, InvalidArgument, NotFound
from atlas.experiment.config import CONDITIONS, ExperimentConfig

if TYPE_CHECKING:
    from atlas.loop.fleet import Fleet
    from atlas.loop.stages import StageEvent, StageResult

Log = Callable[[str], None]
MARKER = "experiment.json"
# Selection backends whose output does not depend on the seed (rules is deterministic; the judge
# decodes greedily, temperature 0). Their selection runs once per condition and every seed trains on
# it, so seeds vary only training, as in the paper; random and none_critical draw with the seed.
SEED_FREE_BACKENDS = frozenset({"rules", "vllm"})
PROGRESS_EVERY_S = 10.0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON so that a reader (or a resumed run) sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as out:
        out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class RunKey:
    condition: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.condition}/seed-{self.seed}"


def plan_runs(config: ExperimentConfig) -> list[RunKey]:
    """Conditions x seeds, seed-major: an interrupted experiment has whole tables for its first seeds."""
    return [RunKey(condition, seed) for seed in config.seeds for condition in config.conditions]


class Progress:
    """Stage events as log lines, at most one per stage every few seconds (plus the last one)."""

    def __init__(self, log: Log, prefix: str) -> None:
        self.log = log
        self.prefix = prefix
        self.last: dict[str, float] = {}

    def __call__(self, event: StageEvent) -> None:
        now = time.monotonic()
        finished = bool(event.total) and event.done >= event.total
        if finished or now - self.last.get(event.stage, 0.0) >= PROGRESS_EVERY_S:
            self.last[event.stage] = now
            self.log(f"[{self.prefix}]{event.line()}")


class Experiment:
    """One experiment directory: prepares it, runs what is not finished, writes the report."""

    def __init__(
        self, config: ExperimentConfig, out_dir: Path, *, fresh: bool = False, log: Log = _stderr
    ) -> None:
        self.config = config
        self.out = Path(out_dir).resolve()
        self.fresh = fresh
        self.log = log

    # -- the directory -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create or check the output directory; ``fresh`` wipes an earlier experiment's directory."""
        marker = self.out / MARKER
        if self.fresh and self.out.exists():
            if not marker.exists() and any(self.out.iterdir()):
                raise FailedPrecondition(
                    f"{self.out} is not empty and holds no {MARKER}: refusing to delete it for --fresh",
                    field_path="out",
                )
            shutil.rmtree(self.out)
        if marker.exists():
            recorded = read_json(marker)
            if recorded.get("fingerprint") != self.config.fingerprint():
                raise FailedPrecondition(
                    f"{self.out} holds experiment {recorded.get('name')!r} run with a different config "
                    f"({recorded.get('source')}); resume needs the same config: use --fresh or another --out",
                    field_path="out",
                )
            return
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            marker,
            {
                "name": self.config.name,
                "source": self.config.source,
                "fingerprint": self.config.fingerprint(),
                "config": {k: v for k, v in asdict(self.config).items() if k != "source"},
            },
        )

    def run_dir(self, key: RunKey) -> Path:
        return self.out / "runs" / key.condition / f"seed-{key.seed}"

    def record(self, key: RunKey) -> dict[str, Any] | None:
        path = self.run_dir(key) / "record.json"
        return read_json(path) if path.exists() else None

    def pending(self) -> list[RunKey]:
        return [key for key in plan_runs(self.config) if self.record(key) is None]

    # -- models ------------------------------------------------------------------------------------

    def resolve_model(self, name: str, field: str) -> Path:
        """``tiny`` (built under models/), ``smollm2-135m`` (pulled, cached) or a local HF directory."""
        if name == "tiny":
            from atlas.models.tiny import build_tiny_model

            path = self.out / "models" / "tiny"
            if not (path / "config.json").exists():
                build_tiny_model(path)
            return path
        if name == "smollm2-135m":
            from atlas.models.smollm2 import pull_smollm2

            return pull_smollm2(progress=False)
        path = Path(name).expanduser().resolve()
        if not (path / "config.json").exists():
            raise NotFound(
                f"{name!r} is not tiny, smollm2-135m or a Hugging Face directory (no config.json)",
                field_path=field,
            )
        return path

    # -- the whole experiment ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run every unfinished (condition, seed), then write and return the report."""
        from atlas.experiment.report import write_results

        self.prepare()
        todo = self.pending()
        done = len(plan_runs(self.config)) - len(todo)
        self.log(f"experiment {self.config.name}: {done} run(s) finished, {len(todo)} to run -> {self.out}")
        if todo:
            base_model = self.resolve_model(self.config.base_model, "base_model")
            judged = [
                k
                for k in todo
                if k.condition == "critical_vllm"
                and "selection" not in self._stages(k)
                and self._shared_selection(k) is None
            ]
            if judged:
                # The judge is needed for these selections only: a fleet with it does them first,
                # so it does not hold memory and CPU through every training and evaluation.
                with self._fleet(needs_judge=True) as fleet:
                    experts = self._experts()
                    for key in judged:
                        self._select(fleet, key, experts, Progress(self.log, key.name))
            with self._fleet(needs_judge=False) as fleet:
                experts = self._experts()
                for key in todo:
                    self._run_one(fleet, key, base_model, experts)
        return write_results(self.config, self.out, self.log)

    @contextmanager
    def _fleet(self, needs_judge: bool) -> Iterator[Fleet]:
        from atlas.loop.fleet import Fleet
        from atlas.loop.judge_server import start_judge_server

        with ExitStack() as stack:
            selector_args = ["--storage-roots", str(self.out)]
            if needs_judge:
                judge_cfg = self.config.selection.judge
                judge_model = self.resolve_model(judge_cfg.model, "selection.judge.model")
                python = Path(judge_cfg.python)
                if not python.is_absolute():
                    python = Path.cwd() / python
                self.log(f"starting the vLLM judge ({judge_model}); this takes a minute or two on a CPU")
                judge = start_judge_server(
                    Path(judge_model),
                    self.out / "fleet" / "logs" / "judge.log",
                    python=python,
                    max_model_len=judge_cfg.max_context_tokens,
                    timeout=judge_cfg.startup_timeout_s,
                )
                stack.enter_context(judge)
                selector_args += [
                    "--judge-url",
                    judge.base_url,
                    "--judge-model",
                    judge.model,
                    "--judge-max-tokens",
                    str(judge_cfg.max_tokens),
                    "--judge-max-context-tokens",
                    str(judge_cfg.max_context_tokens),
                    "--judge-concurrency",
                    str(judge_cfg.concurrency),
                    "--judge-timeout-s",
                    str(judge_cfg.timeout_s),
                ]
            roots = ["--storage-roots", str(self.out)]
            fleet = Fleet(
                self.out / "fleet",
                extra_args={"selector": selector_args, "trainer": roots, "evaluator": roots},
            )
            self.log("starting the fleet (selector, trainer, evaluator)")
            stack.enter_context(fleet)
            _cancel_leftovers(fleet, self.log)
            yield fleet

    def _experts(self) -> dict[str, Any]:
        from atlas.loop.stages import generate_experts

        record_path = self.out / "data" / "experts.json"
        if record_path.exists():
            return dict(read_json(record_path))
        data = self.config.data
        self.log(f"expert data: {data.episodes_per_env} episodes of each of {', '.join(data.envs)}")
        result = generate_experts(
            list(data.envs),
            data.episodes_per_env,
            data.seed,
            str(self.out / "data" / "experts"),
            workers=data.workers,
            progress=Progress(self.log, "experts"),
        )
        record = result.as_dict()
        write_json_atomic(record_path, record)
        return record

    # -- one run -----------------------------------------------------------------------------------

    def _stages(self, key: RunKey) -> dict[str, Any]:
        path = self.run_dir(key) / "stages.json"
        return dict(read_json(path)) if path.exists() else {}

    def _stage(self, key: RunKey, name: str, output: Path, run: Callable[[], StageResult]) -> dict[str, Any]:
        """A finished stage's record, or run it from a clean output and record it."""
        stages = self._stages(key)
        if name in stages:
            return dict(stages[name])
        if output.exists():
            shutil.rmtree(output)  # an interrupted attempt's partial output
        record = run().as_dict()
        stages[name] = record
        write_json_atomic(self.run_dir(key) / "stages.json", stages)
        return record

    def _select(
        self, fleet: Fleet, key: RunKey, experts: dict[str, Any], progress: Progress
    ) -> dict[str, Any]:
        """The run's selection job over the shared expert data (recorded like any stage)."""
        from atlas.loop.stages import run_selection

        backend = CONDITIONS[key.condition][0]
        assert backend is not None
        shared = self._shared_selection(key)
        if shared is not None and "selection" not in self._stages(key):
            stages = self._stages(key)
            stages["selection"] = shared
            write_json_atomic(self.run_dir(key) / "stages.json", stages)
            self.log(f"[{key.name}]  selection: seed-independent, reusing {shared['shared_from']}")
        out = self.run_dir(key) / "selected"
        return self._stage(
            key,
            "selection",
            out,
            lambda: run_selection(
                fleet.selector,
                experts["output_uri"],
                str(out),
                backend,
                max_ratio=self.config.selection.max_ratio,
                seed=key.seed,
                judge={"model": "judge"} if backend == "vllm" else None,
                progress=progress,
            ),
        )

    def _shared_selection(self, key: RunKey) -> dict[str, Any] | None:
        """Another seed's finished selection of this condition, when the backend ignores the seed."""
        if CONDITIONS[key.condition][0] not in SEED_FREE_BACKENDS:
            return None
        for seed in self.config.seeds:
            other = RunKey(key.condition, seed)
            if seed == key.seed:
                continue
            record = self._stages(other).get("selection")
            if record is not None:
                # It cost this run nothing: the time stays with the run that did it (no double count).
                return {**record, "seconds": 0.0, "shared_from": record.get("shared_from") or other.name}
        return None

    def _run_one(self, fleet: Fleet, key: RunKey, base_model: Path, experts: dict[str, Any]) -> None:
        from atlas.loop.stages import run_evaluation, run_training

        config = self.config
        backend, mask = CONDITIONS[key.condition]
        run_dir = self.run_dir(key)
        progress = Progress(self.log, key.name)
        self.log(f"run {key.name}")
        started = time.monotonic()
        stages: dict[str, dict[str, Any]] = {}
        if backend is not None:
            stages["selection"] = self._select(fleet, key, experts, progress)
        adapter_uri: str | None = None
        training_job = ""
        if mask is not None:
            overrides = {**config.training, "seed": key.seed}
            stages["training"] = self._stage(
                key,
                "training",
                run_dir / "train",
                lambda: run_training(
                    fleet.trainer,
                    stages["selection"]["output_uri"] if "selection" in stages else experts["output_uri"],
                    str(base_model),
                    str(run_dir / "train"),
                    mask=mask,
                    overrides=overrides,
                    progress=progress,
                ),
            )
            adapter_uri = stages["training"]["stats"].get("adapter_uri") or stages["training"]["stats"].get(
                "model_uri"
            )
            training_job = stages["training"]["job_id"] or ""
        ev = config.evaluation
        stages["evaluation"] = self._stage(
            key,
            "evaluation",
            run_dir / "eval",
            lambda: run_evaluation(
                fleet.evaluator,
                base_model=str(base_model),
                adapter_uri=adapter_uri,
                env_ids=[*ev.held_in, *ev.held_out],
                episodes_per_env=ev.episodes_per_env,
                seed=config.eval_seed(key.seed),
                max_turns=ev.max_turns,
                concurrency=ev.concurrency,
                max_new_tokens=ev.max_new_tokens,
                out_uri=str(run_dir / "eval"),
                progress=progress,
                training_job_id=training_job,
                name=key.name,
            ),
        )
        record = build_record(key, stages, base_model, experts, config.eval_seed(key.seed))
        record["harness_seconds"] = round(time.monotonic() - started, 2)
        write_json_atomic(run_dir / "record.json", record)
        self.log(f"run {key.name} finished in {record['seconds']:.0f}s of stage time")


def build_record(
    key: RunKey, stages: dict[str, dict[str, Any]], base_model: Path, experts: dict[str, Any], eval_seed: int
) -> dict[str, Any]:
    """A finished run: its stages (job ids, artefact URIs, numbers) and the tokens it trained on."""
    training = stages.get("training")
    tokens: dict[str, Any] = {"supervised": 0, "input": 0, "computed": 0}
    if training is not None:
        metrics = read_json(Path(training["stats"]["metrics_uri"]))
        tokens = {
            "supervised": int(metrics.get("supervised_tokens", 0)),
            "input": int(metrics.get("tokens", 0)),
            "computed": int(metrics.get("computed_tokens", metrics.get("tokens", 0))),
            "train_seconds": float(metrics.get("train_seconds", 0.0)),
            "steps": int(metrics.get("steps", 0)),
            "final_loss": metrics.get("final_loss"),
        }
    return {
        "condition": key.condition,
        "seed": key.seed,
        "eval_seed": eval_seed,
        "base_model": str(base_model),
        "experts_uri": experts["output_uri"],
        "stages": stages,
        "tokens": tokens,
        "seconds": round(sum(float(s["seconds"]) for s in stages.values()), 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _cancel_leftovers(fleet: Fleet, log: Log) -> None:
    """Cancel jobs an interrupted experiment left queued or running (restarted services re-queue
    them): their stage is redone from scratch, and two jobs must not compete for the CPUs."""
    from atlas.common.v1 import job_pb2
    from atlas.evaluator.v1 import evaluator_service_pb2 as epb
    from atlas.selector.v1 import selector_service_pb2 as spb
    from atlas.trainer.v1 import trainer_service_pb2 as tpb

    services: list[tuple[str, Callable[[Any], Any], type, Callable[[Any], Any], type]] = [
        ("selection", fleet.selector.list_selection_jobs, spb.ListSelectionJobsRequest,
         fleet.selector.cancel_selection_job, spb.CancelSelectionJobRequest),
        ("training", fleet.trainer.list_training_jobs, tpb.ListTrainingJobsRequest,
         fleet.trainer.cancel_training_job, tpb.CancelTrainingJobRequest),
        ("evaluation", fleet.evaluator.list_evaluation_jobs, epb.ListEvaluationJobsRequest,
         fleet.evaluator.cancel_evaluation_job, epb.CancelEvaluationJobRequest),
    ]  # fmt: skip
    for stage, list_jobs, list_request, cancel, cancel_request in services:
        for state in (job_pb2.JOB_STATE_QUEUED, job_pb2.JOB_STATE_RUNNING):
            token = ""
            while True:
                page = list_jobs(list_request(page_size=100, page_token=token, state=state))
                for job in page.jobs:
                    log(f"cancelling {stage} job {job.id} left over by an interrupted run")
                    cancel(cancel_request(id=job.id))
                token = page.next_page_token
                if not token:
                    break


def run_experiment(
    config: ExperimentConfig, out_dir: Path, *, fresh: bool = False, log: Log = _stderr
) -> dict[str, Any]:
    """Run (or resume) ``config`` into ``out_dir``; returns the results (also in results.json)."""
    if not config.conditions:
        raise InvalidArgument("no conditions", field_path="conditions")
    return Experiment(config, out_dir, fresh=fresh, log=log).run()
