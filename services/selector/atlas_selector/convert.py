"""Selector messages <-> domain objects (the shared ones are in atlas.protoconv)."""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterator, Sequence

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from atlas.common.v1 import dataset_pb2, job_pb2, trajectory_pb2
from atlas.data.model import StepLabel, Trajectory
from atlas.errors import AtlasError, InvalidArgument
from atlas.jobs import Job
from atlas.protoconv import (
    add_step_labels,
    check_column_length,
    criteria_bits,
    criteria_from_bits,
    dataset_format_from_proto,
    dataset_format_to_proto,
    job_status_to_proto,
    status_code_name,
    status_code_number,
    step_label_from_proto,
    trajectories_from_columns,
    trajectory_from_proto,
    trajectory_to_proto,
)
from atlas.selector.v1 import selector_service_pb2 as pb
from atlas_selector.jobs import SelectionJobSpec
from atlas_selector.selector import Outcome, SelectionOptions, Undecodable


def options_from_proto(msg: pb.SelectionConfig, field_path: str = "config") -> SelectionOptions:
    if math.isnan(msg.max_ratio):
        raise InvalidArgument("must be in (0, 1], got nan", field_path=f"{field_path}.max_ratio")
    return SelectionOptions(
        backend=msg.backend or "rules",
        max_ratio=msg.max_ratio,
        min_steps=msg.min_steps if msg.HasField("min_steps") else 1,
        seed=msg.seed,
        model=msg.model,
        complement_of=msg.complement_of,
    )


def options_to_proto(options: SelectionOptions) -> pb.SelectionConfig:
    return pb.SelectionConfig(
        backend=options.backend,
        max_ratio=options.max_ratio,
        min_steps=options.min_steps,
        seed=options.seed,
        model=options.model,
        complement_of=options.complement_of,
    )


def decode_batch(
    msgs: Sequence[trajectory_pb2.Trajectory],
    columns: trajectory_pb2.TrajectoryColumns | None = None,
    field_path: str = "trajectories",
) -> list[Trajectory | Undecodable]:
    """Each trajectory decoded, or an Undecodable carrying why (it then fails alone): those of
    ``msgs`` first, then those of ``columns``. Columns whose lengths disagree fail the request."""
    with _gc_paused():
        return _decode_batch(msgs, columns, field_path)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a batch's objects are built.

    A 256-trajectory request builds ~3,500 Message objects, all of which live on; with the collector
    on, every 700 new objects start a collection that walks them and frees nothing. Paused, one
    collection follows instead. Per 1,000 trajectories (decode and select, bench/README.md):
    30 collections took 9.6 ms, paused 7 took 5.6 ms; decoding itself went from 17.4 to 10.0 ms.
    If another thread paused it too, the first to finish turns it back on, which is harmless; a
    collector that was off stays off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _decode_batch(
    msgs: Sequence[trajectory_pb2.Trajectory],
    columns: trajectory_pb2.TrajectoryColumns | None,
    field_path: str,
) -> list[Trajectory | Undecodable]:
    decoded: list[Trajectory | Undecodable] = []
    for k, msg in enumerate(msgs):
        try:
            decoded.append(trajectory_from_proto(msg, f"{field_path}[{k}]"))
        except AtlasError as error:
            decoded.append(Undecodable(msg.id, error))
    if columns is not None and _has_any(columns):
        for k, item in enumerate(trajectories_from_columns(columns)):
            decoded.append(item if isinstance(item, Trajectory) else Undecodable(columns.ids[k], item))
    return decoded


def _has_any(columns: trajectory_pb2.TrajectoryColumns) -> bool:
    """Whether any column is set: a request with contents but no ids is malformed, not empty."""
    return bool(
        columns.ids
        or columns.message_counts
        or columns.roles
        or columns.contents
        or columns.train
        or columns.tasks
        or columns.source_envs
    )


def job_error_to_proto(error: AtlasError) -> job_pb2.JobError:
    return job_pb2.JobError(
        code=status_code_number(error.code), message=error.message, field_path=error.field_path
    )


def add_results(
    field: RepeatedCompositeFieldContainer[pb.SelectionResult],
    outcomes: Sequence[Outcome],
    prompt_version: str = "",
) -> None:
    """Append one SelectionResult per outcome to a response's ``results``, built in place with
    ``add(...)`` (cheaper than a message per result copied in: a response answers thousands)."""
    add = field.add
    for outcome in outcomes:
        result = add(trajectory_id=outcome.trajectory_id, step_count=outcome.step_count)
        if prompt_version:
            result.prompt_version = prompt_version
        add_step_labels(result.labels, outcome.labels)
        if outcome.error is not None:
            result.error.CopyFrom(job_error_to_proto(outcome.error))
        elif outcome.masked is not None:
            result.masked_trajectory.CopyFrom(trajectory_to_proto(outcome.masked))


def add_result_columns(
    columns: pb.SelectionResultColumns,
    failed: RepeatedCompositeFieldContainer[pb.SelectionResult],
    outcomes: Sequence[Outcome],
    prompt_version: str = "",
) -> None:
    """The labelled outcomes into ``columns`` (a labels_only reply_in_columns response), the failed
    ones into ``failed`` as SelectionResults with their error.

    A few repeated fields extended once per response, where ``add_results`` builds a SelectionResult
    and a StepLabel per label: 0.6 vs 3.5 ms per 1,000 trajectories (bench/README.md).
    """
    ids: list[str] = []
    step_counts: list[int] = []
    label_counts: list[int] = []
    indices: list[int] = []
    rationales: list[str] = []
    criteria = bytearray()
    errors: list[Outcome] = []
    for outcome in outcomes:
        if outcome.error is not None:
            errors.append(outcome)
            continue
        ids.append(outcome.trajectory_id)
        step_counts.append(outcome.step_count)
        label_counts.append(len(outcome.labels))
        for label in outcome.labels:
            indices.append(label.step_index)
            criteria.append(criteria_bits(label.criteria))
            rationales.append(label.rationale)
    columns.trajectory_ids.extend(ids)
    columns.step_counts.extend(step_counts)
    columns.label_counts.extend(label_counts)
    columns.step_indices.extend(indices)
    columns.criteria += bytes(criteria)
    columns.rationales.extend(rationales)
    if prompt_version and ids:
        columns.prompt_version = prompt_version
    add_results(failed, errors, prompt_version)


def outcomes_from_response(response: pb.SelectStepsResponse | pb.StreamSelectStepsResponse) -> list[Outcome]:
    """What a response carries, as Outcomes: its ``results`` first, then its ``result_columns``.

    Labels only (a masked trajectory is not read back). Raises InvalidArgument naming the column when
    the result columns disagree in length.
    """
    outcomes = [outcome_from_proto(result) for result in response.results]
    columns = response.result_columns
    ids, label_counts = columns.trajectory_ids, columns.label_counts
    labels = len(columns.step_indices)

    for length, expected, name, what in (
        (len(columns.step_counts), len(ids), "step_counts", "one per id"),
        (len(label_counts), len(ids), "label_counts", "one per id"),
        (labels, sum(label_counts), "step_indices", "one per label, the sum of label_counts"),
        (len(columns.criteria), labels, "criteria", "one byte per label"),
        (len(columns.rationales), labels, "rationales", "one per label"),
    ):
        check_column_length(length, expected, f"result_columns.{name}", what)
    indices, criteria, rationales = list(columns.step_indices), columns.criteria, list(columns.rationales)
    at = 0
    for trajectory_id, step_count, count in zip(ids, columns.step_counts, label_counts, strict=True):
        labels_of = []
        for k in range(at, at + count):
            named = criteria_from_bits(criteria[k], f"result_columns.criteria[{k}]")
            labels_of.append(StepLabel(indices[k], named, rationales[k]))
        outcomes.append(Outcome(trajectory_id, step_count, labels_of))
        at += count
    return outcomes


def outcome_from_proto(result: pb.SelectionResult) -> Outcome:
    """One SelectionResult as an Outcome: its labels, or its error (with the error's status code)."""
    if result.HasField("error"):
        error = AtlasError(result.error.message, field_path=result.error.field_path)
        error.code = status_code_name(result.error.code)
        return Outcome(result.trajectory_id, result.step_count, [], error=error)
    labels = [step_label_from_proto(label) for label in result.labels]
    return Outcome(result.trajectory_id, result.step_count, labels)


def job_spec_from_proto(msg: pb.CreateSelectionJobRequest) -> SelectionJobSpec:
    return SelectionJobSpec(
        input_uri=msg.input.uri,
        output_uri=msg.output_uri,
        input_format=dataset_format_from_proto(msg.input.format, "input.format") or "auto",
        input_sha256=msg.input.sha256,
        output_format=dataset_format_from_proto(msg.output_format, "output_format") or "agentgym",
        options=options_from_proto(msg.config),
    )


def job_to_proto(job: Job) -> pb.SelectionJob:
    spec = SelectionJobSpec.from_dict(job.spec)
    status = job_status_to_proto(job)
    return pb.SelectionJob(
        id=job.id,
        status=status,
        input=dataset_pb2.DatasetRef(
            uri=spec.input_uri,
            format=dataset_format_to_proto(spec.input_format),
            sha256=spec.input_sha256,
        ),
        output_uri=spec.output_uri,
        output_format=dataset_format_to_proto(spec.output_format),
        config=options_to_proto(spec.options),
        trajectories_done=int(job.progress.get("done", 0)),
        trajectories_total=int(job.progress.get("total", 0)),
        trajectories_failed=int(job.progress.get("failed", 0)),
    )
