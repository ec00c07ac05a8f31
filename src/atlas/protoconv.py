"""The one place that converts between protobuf messages and the domain model.

Servicers call these and nothing else touches ``*_pb2`` field by field, so a proto change is a
change here. Incoming messages are validated on the way in (proto3 enums accept any integer, and
zero means "unset"): every problem is an InvalidArgument whose ``field_path`` names the offending
request field, e.g. ``trajectories[2].messages[5].role``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2

from atlas.common.v1 import dataset_pb2, job_pb2, trajectory_pb2
from atlas.data.formats import FORMAT_NAMES, check_labels
from atlas.data.model import Criterion, Message, Role, StepLabel, Trajectory
from atlas.errors import InvalidArgument
from atlas.jobs import Job

_ROLE_TO_PROTO: dict[Role, trajectory_pb2.Role] = {
    Role.SYSTEM: trajectory_pb2.ROLE_SYSTEM,
    Role.USER: trajectory_pb2.ROLE_USER,
    Role.ASSISTANT: trajectory_pb2.ROLE_ASSISTANT,
    Role.TOOL: trajectory_pb2.ROLE_TOOL,
}
_CRITERION_TO_PROTO: dict[Criterion, trajectory_pb2.Criterion] = {
    Criterion.PLAN_CREATION: trajectory_pb2.CRITERION_PLAN_CREATION,
    Criterion.CRITICAL_OBSERVATION: trajectory_pb2.CRITERION_CRITICAL_OBSERVATION,
    Criterion.CRITICAL_ACTION: trajectory_pb2.CRITERION_CRITICAL_ACTION,
    Criterion.SELF_CORRECTION: trajectory_pb2.CRITERION_SELF_CORRECTION,
}
_FORMAT_TO_PROTO: dict[str, dataset_pb2.DatasetFormat] = {
    "agentgym": dataset_pb2.DATASET_FORMAT_AGENTGYM,
    "openai": dataset_pb2.DATASET_FORMAT_OPENAI,
    "axolotl": dataset_pb2.DATASET_FORMAT_AXOLOTL,
    "sharegpt": dataset_pb2.DATASET_FORMAT_SHAREGPT,
}
JOB_STATE_NAMES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
"""Job states as the domain spells them: the proto enum names without the ``JOB_STATE_`` prefix."""
_JOB_STATE_TO_PROTO: dict[str, job_pb2.JobState] = {
    "QUEUED": job_pb2.JOB_STATE_QUEUED,
    "RUNNING": job_pb2.JOB_STATE_RUNNING,
    "SUCCEEDED": job_pb2.JOB_STATE_SUCCEEDED,
    "FAILED": job_pb2.JOB_STATE_FAILED,
    "CANCELLED": job_pb2.JOB_STATE_CANCELLED,
}
_ROLE_FROM_PROTO: dict[int, Role] = {value: role for role, value in _ROLE_TO_PROTO.items()}
_CRITERION_FROM_PROTO: dict[int, Criterion] = {
    value: criterion for criterion, value in _CRITERION_TO_PROTO.items()
}
_FORMAT_FROM_PROTO: dict[int, str] = {value: name for name, value in _FORMAT_TO_PROTO.items()}
_JOB_STATE_FROM_PROTO: dict[int, str] = {value: name for name, value in _JOB_STATE_TO_PROTO.items()}


# ------------------------------------------------------------------------------------------ trajectories


def trajectory_to_proto(trajectory: Trajectory) -> trajectory_pb2.Trajectory:
    """A domain Trajectory as its proto; an unstated train flag stays unset (proto3 ``optional``).

    Messages are appended with ``messages.add(...)``: on the upb runtime that is about twice as fast as
    building each ``Message`` and passing the list, and clients convert every trajectory they send.
    """
    msg = trajectory_pb2.Trajectory(
        id=trajectory.id, source_env=trajectory.source_env, task=trajectory.task, metadata=trajectory.metadata
    )
    add, roles = msg.messages.add, _ROLE_TO_PROTO
    for m in trajectory.messages:
        if m.train is None:
            add(role=roles[m.role], content=m.content)
        else:
            add(role=roles[m.role], content=m.content, train=m.train)
    if trajectory.labels:
        add_step_labels(msg.labels, trajectory.labels)
    return msg


def trajectory_from_proto(msg: trajectory_pb2.Trajectory, field_path: str = "trajectory") -> Trajectory:
    """A validated domain Trajectory; raises InvalidArgument naming the field under ``field_path``.

    Checks: a non-empty id, a known role on every message, train=true only on assistant turns, and
    labels that name distinct existing assistant turns not marked train=false, with known criteria.
    """
    if not msg.id:
        raise InvalidArgument("a trajectory needs a non-empty id", field_path=f"{field_path}.id")
    roles, has_train = _ROLE_FROM_PROTO, trajectory_pb2.Message.HasField
    # The hot path of every selection request: read each upb field once (attribute reads dominate),
    # then check the plain Python objects.
    messages = [
        Message(roles.get(m.role), m.content, m.train if has_train(m, "train") else None)  # type: ignore[arg-type]
        for m in msg.messages
    ]
    for i, message in enumerate(messages):
        if message.role is None or (message.train is True and message.role is not Role.ASSISTANT):
            at = f"{field_path}.messages[{i}]"
            _bad_turn(message, msg.messages[i].role, _ROLE_NAMES, f"{at}.role", f"{at}.train")
    trajectory = Trajectory(
        id=msg.id,
        messages=messages,
        source_env=msg.source_env,
        task=msg.task,
        metadata=dict(msg.metadata),
        labels=[
            step_label_from_proto(label, f"{field_path}.labels[{j}]") for j, label in enumerate(msg.labels)
        ],
    )
    check_labels(trajectory, field_path=f"{field_path}.labels")
    return trajectory


# TrajectoryColumns: one byte per role and per train flag.
_ROLE_BYTE: dict[Role, int] = {role: int(value) for role, value in _ROLE_TO_PROTO.items()}
_ROLE_OF_BYTE: tuple[Role | None, ...] = tuple(_ROLE_FROM_PROTO.get(b) for b in range(256))
_KNOWN_ROLE_BYTES = bytes(_ROLE_BYTE.values())
_ROLE_NAMES = ", ".join(r.name for r in Role)
_ROLE_BYTES_HELP = ", ".join(f"{value} ({role.name})" for role, value in _ROLE_BYTE.items())
_TRAIN_BYTE = {None: 0, False: 1, True: 2}
_TRAIN_OF_BYTE: tuple[bool | None, ...] = (None, False, True)


def trajectories_to_columns(trajectories: Sequence[Trajectory]) -> trajectory_pb2.TrajectoryColumns:
    """Trajectories as one TrajectoryColumns message (ids, turns, train flags, tasks, source envs).

    Metadata and labels are not carried. The cheap way to send many trajectories: a few repeated
    fields instead of a sub-message per turn.
    """
    messages = [m for t in trajectories for m in t.messages]
    columns = trajectory_pb2.TrajectoryColumns(
        ids=[t.id for t in trajectories],
        message_counts=[len(t.messages) for t in trajectories],
        roles=bytes([_ROLE_BYTE[m.role] for m in messages]),
        contents=[m.content for m in messages],
    )
    if any(m.train is not None for m in messages):
        columns.train = bytes([_TRAIN_BYTE[m.train] for m in messages])
    if any(t.task for t in trajectories):
        columns.tasks.extend(t.task for t in trajectories)
    if any(t.source_env for t in trajectories):
        columns.source_envs.extend(t.source_env for t in trajectories)
    return columns


def check_column_length(length: int, expected: int, field_path: str, what: str) -> None:
    """Raise InvalidArgument at ``field_path`` when a column has ``length`` entries, not ``expected``."""
    if length != expected:
        raise InvalidArgument(f"has {length} entries, expected {expected} ({what})", field_path=field_path)


def trajectories_from_columns(
    columns: trajectory_pb2.TrajectoryColumns, field_path: str = "columns"
) -> list[Trajectory | InvalidArgument]:
    """The trajectories of a TrajectoryColumns, each a Trajectory or the InvalidArgument it fails with
    (an unknown role, train=true on a turn that is not the assistant's: that trajectory alone fails).

    Raises InvalidArgument when the columns disagree in length (the message as a whole is wrong).
    """
    ids, counts, roles, train = list(columns.ids), list(columns.message_counts), columns.roles, columns.train
    contents = list(columns.contents)
    n, total = len(ids), sum(counts)

    def check(length: int, expected: int, name: str, what: str) -> None:
        check_column_length(length, expected, f"{field_path}.{name}", what)

    check(len(counts), n, "message_counts", "one per id")
    check(len(contents), total, "contents", "one per message, the sum of message_counts")
    check(len(roles), total, "roles", "one byte per message")
    if train:
        check(len(train), total, "train", "empty or one byte per message")
    tasks = list(columns.tasks) or [""] * n
    check(len(tasks), n, "tasks", "empty or one per id")
    envs = list(columns.source_envs) or [""] * n
    check(len(envs), n, "source_envs", "empty or one per id")
    # Hot path (a pipeline's whole traffic): build each Message straight from the columns; look for
    # problems only where a quick scan of the whole batch says there is one.
    suspect_roles = bool(roles.translate(None, _KNOWN_ROLE_BYTES))
    suspect_train = bool(train) and max(train) > 1
    # Every message of the batch at once (the role of an unknown byte is None until checked), then
    # each trajectory takes its slice.
    role_list = list(map(_ROLE_OF_BYTE.__getitem__, roles))
    if train:
        flags = [_TRAIN_OF_BYTE[b] if b < 3 else None for b in train]
        every: list[Message] = list(map(Message, role_list, contents, flags))  # type: ignore[arg-type]
    else:
        every = list(map(Message, role_list, contents))  # type: ignore[arg-type]
    out: list[Trajectory | InvalidArgument] = []
    start = 0
    for k in range(n):
        end = start + counts[k]
        messages = every[start:end]
        try:
            if not ids[k]:
                raise InvalidArgument(
                    "a trajectory needs a non-empty id", field_path=f"{field_path}.ids[{k}]"
                )
            if suspect_roles or suspect_train:
                _check_column_messages(messages, roles, train, start, field_path)
            out.append(Trajectory(id=ids[k], messages=messages, source_env=envs[k], task=tasks[k]))
        except InvalidArgument as error:
            out.append(error)
        start = end
    return out


def _check_column_messages(
    messages: list[Message], roles: bytes, train: bytes, start: int, field_path: str
) -> None:
    for i, message in enumerate(messages):
        at = start + i
        if train and train[at] > 2:
            raise InvalidArgument(
                f"a train flag is 0 (not stated), 1 (false) or 2 (true), got {train[at]}",
                field_path=f"{field_path}.train[{at}]",
            )
        if message.role is None or (message.train is True and message.role is not Role.ASSISTANT):
            _bad_turn(
                message, roles[at], _ROLE_BYTES_HELP, f"{field_path}.roles[{at}]", f"{field_path}.train[{at}]"
            )


def _bad_turn(message: Message, got_role: int, roles_help: str, role_path: str, train_path: str) -> None:
    """Raise the error of a turn with an unknown role or train=true on a turn not the assistant's."""
    if message.role is None:
        raise InvalidArgument(f"role must be one of {roles_help}, got {got_role}", field_path=role_path)
    raise InvalidArgument(
        f"only assistant turns may have train=true, this is a {message.role.value} turn",
        field_path=train_path,
    )


def trajectories_from_proto(
    msgs: Iterable[trajectory_pb2.Trajectory], field_path: str = "trajectories"
) -> list[Trajectory]:
    """Validated Trajectories from a repeated field, with errors at ``field_path[i]....``."""
    return [trajectory_from_proto(msg, f"{field_path}[{i}]") for i, msg in enumerate(msgs)]


def step_label_to_proto(label: StepLabel) -> trajectory_pb2.StepLabel:
    return trajectory_pb2.StepLabel(
        step_index=label.step_index,
        criteria=[_criterion_to_proto(c) for c in label.criteria],
        rationale=label.rationale,
    )


def add_step_labels(
    field: RepeatedCompositeFieldContainer[trajectory_pb2.StepLabel], labels: Iterable[StepLabel]
) -> None:
    """Append ``labels`` to a repeated StepLabel field, built in place with ``add(...)``.

    Cheaper than a temporary message per label copied in; a selection response carries a few labels
    for each of thousands of trajectories.
    """
    add = field.add
    for label in labels:
        add(
            step_index=label.step_index,
            criteria=[_criterion_to_proto(c) for c in label.criteria],
            rationale=label.rationale,
        )


def _criterion_to_proto(criterion: Criterion | str) -> trajectory_pb2.Criterion:
    # A StrEnum hashes like its value, so plain strings hit the dict too; Criterion() names a bad one.
    value = _CRITERION_TO_PROTO.get(criterion)  # type: ignore[arg-type]
    return value if value is not None else _CRITERION_TO_PROTO[Criterion(criterion)]


def step_label_from_proto(msg: trajectory_pb2.StepLabel, field_path: str = "label") -> StepLabel:
    """A StepLabel with known criteria (at least one); its step range is checked with its trajectory."""
    if not msg.criteria:
        raise InvalidArgument(
            "a critical step needs at least one criterion", field_path=f"{field_path}.criteria"
        )
    criteria = []
    for k, value in enumerate(msg.criteria):
        criterion = _CRITERION_FROM_PROTO.get(value)
        if criterion is None:
            raise InvalidArgument(
                f"criterion must be one of {', '.join(c.name for c in Criterion)}, got {value}",
                field_path=f"{field_path}.criteria[{k}]",
            )
        criteria.append(criterion)
    return StepLabel(step_index=msg.step_index, criteria=tuple(criteria), rationale=msg.rationale)


# Criteria as one byte (SelectionResultColumns.criteria): bit 1 << (c - 1) for each Criterion value c.
_CRITERION_BIT: dict[Criterion, int] = {c: 1 << (int(v) - 1) for c, v in _CRITERION_TO_PROTO.items()}
_CRITERIA_OF_BITS: tuple[tuple[Criterion, ...], ...] = tuple(
    tuple(c for c in Criterion if bits & _CRITERION_BIT[c]) for bits in range(1 << len(_CRITERION_BIT))
)


def criteria_bits(criteria: Iterable[Criterion | str]) -> int:
    """The criteria as one byte, bit 1 << (c - 1) for each Criterion value c."""
    bits = 0
    for criterion in criteria:
        bit = _CRITERION_BIT.get(criterion)  # type: ignore[arg-type]  # a StrEnum hashes like its value
        bits |= bit if bit is not None else _CRITERION_BIT[Criterion(criterion)]
    return bits


def criteria_from_bits(bits: int, field_path: str = "criteria") -> tuple[Criterion, ...]:
    """The criteria of a byte from :func:`criteria_bits`, in Criterion order (the canonical one)."""
    if not 0 < bits < len(_CRITERIA_OF_BITS):
        raise InvalidArgument(
            f"a label's criteria byte sets bits 1, 2, 4 or 8, at least one; got {bits}",
            field_path=field_path,
        )
    return _CRITERIA_OF_BITS[bits]


# ------------------------------------------------------------------------------------- enums by name


def dataset_format_to_proto(name: str | None) -> dataset_pb2.DatasetFormat:
    """A format name as the enum; None, "" and "auto" (detect it) map to UNSPECIFIED."""
    if name in (None, "", "auto"):
        return dataset_pb2.DATASET_FORMAT_UNSPECIFIED
    value = _FORMAT_TO_PROTO.get(name)
    if value is None:
        raise InvalidArgument(
            f"unknown dataset format {name!r}; expected one of {', '.join(FORMAT_NAMES)}", field_path="format"
        )
    return value


def dataset_format_from_proto(value: int, field_path: str = "format") -> str | None:
    """The format name for an enum value; None for UNSPECIFIED (detect it, or take the manifest's)."""
    if value == dataset_pb2.DATASET_FORMAT_UNSPECIFIED:
        return None
    name = _FORMAT_FROM_PROTO.get(value)
    if name is None:
        raise InvalidArgument(f"unknown dataset format enum value {value}", field_path=field_path)
    return name


def job_state_to_proto(name: str) -> job_pb2.JobState:
    """A job state name from :data:`JOB_STATE_NAMES` as the enum."""
    value = _JOB_STATE_TO_PROTO.get(name)
    if value is None:
        raise ValueError(f"unknown job state {name!r}; expected one of {', '.join(JOB_STATE_NAMES)}")
    return value


def job_state_from_proto(value: int, field_path: str = "state") -> str | None:
    """The job state name for an enum value; None for UNSPECIFIED (in a List filter: any state)."""
    if value == job_pb2.JOB_STATE_UNSPECIFIED:
        return None
    name = _JOB_STATE_FROM_PROTO.get(value)
    if name is None:
        raise InvalidArgument(
            f"job state must be one of {', '.join(JOB_STATE_NAMES)}, got enum value {value}",
            field_path=field_path,
        )
    return name


def status_code_number(name: str) -> int:
    """The google.rpc.Code number of a status name ("INVALID_ARGUMENT" -> 3); UNKNOWN (2) if unknown."""
    return int(code_pb2.Code.Value(name)) if name in code_pb2.Code.keys() else code_pb2.UNKNOWN  # noqa: SIM118 - an EnumTypeWrapper, not a dict


def status_code_name(number: int) -> str:
    """The status name of a google.rpc.Code number (3 -> "INVALID_ARGUMENT"); "UNKNOWN" if unknown."""
    return str(code_pb2.Code.Name(number)) if number in code_pb2.Code.values() else "UNKNOWN"


def job_error_to_proto(code: str, message: str, field_path: str = "") -> job_pb2.JobError:
    return job_pb2.JobError(code=status_code_number(code), message=message, field_path=field_path)


def timestamp_to_proto(seconds: float | None) -> Timestamp | None:
    """Epoch seconds as a Timestamp; None stays unset."""
    if seconds is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def job_status_to_proto(job: Job) -> job_pb2.JobStatus:
    """State, timestamps and error of a stored job, as every job resource reports them."""
    status = job_pb2.JobStatus(
        state=job_state_to_proto(job.state.value),
        create_time=timestamp_to_proto(job.create_time),
        start_time=timestamp_to_proto(job.start_time),
        end_time=timestamp_to_proto(job.end_time),
        update_time=timestamp_to_proto(job.update_time),
    )
    if job.error is not None:
        status.error.CopyFrom(job_error_to_proto(job.error.code, job.error.message, job.error.field_path))
    return status
