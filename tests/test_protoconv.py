"""Proto <-> domain conversion: lossless round trips and field paths on every rejection."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.common.v1 import dataset_pb2, job_pb2, trajectory_pb2
from atlas.data.formats import FORMAT_NAMES, read_file
from atlas.data.model import Criterion, Message, Role, StepLabel, Trajectory
from atlas.errors import InvalidArgument
from atlas.protoconv import (
    JOB_STATE_NAMES,
    dataset_format_from_proto,
    dataset_format_to_proto,
    job_state_from_proto,
    job_state_to_proto,
    step_label_from_proto,
    step_label_to_proto,
    trajectories_from_columns,
    trajectories_from_proto,
    trajectories_to_columns,
    trajectory_from_proto,
    trajectory_to_proto,
)

SAMPLE = Path(__file__).parent / "data" / "formats" / "babyai_agentgym.jsonl"


def trajectory() -> Trajectory:
    return Trajectory(
        id="t-1",
        messages=[
            Message(Role.SYSTEM, "sys", None),
            Message(Role.USER, "Your goal: open the door", False),
            Message(Role.ASSISTANT, "Action: go to door 1", False),
            Message(Role.TOOL, "You are at the door.", None),
            Message(Role.ASSISTANT, "Action: toggle", True),
            Message(Role.ASSISTANT, "Action: done", None),
        ],
        source_env="babyai/Open",
        task="open the door",
        metadata={"seed": "3"},
        labels=[StepLabel(1, (Criterion.CRITICAL_ACTION, Criterion.PLAN_CREATION), "opens it")],
    )


def test_round_trip_keeps_everything_including_unset_train() -> None:
    original = trajectory()
    msg = trajectory_to_proto(original)
    assert [m.HasField("train") for m in msg.messages] == [False, True, True, False, True, False]
    assert msg.messages[3].role == trajectory_pb2.ROLE_TOOL
    assert list(msg.labels[0].criteria) == [
        trajectory_pb2.CRITERION_CRITICAL_ACTION,
        trajectory_pb2.CRITERION_PLAN_CREATION,
    ]
    wire = trajectory_pb2.Trajectory.FromString(msg.SerializeToString())
    assert trajectory_from_proto(wire) == original


def test_sample_dataset_round_trips() -> None:
    trajectories = list(read_file(SAMPLE))
    msgs = [trajectory_to_proto(t) for t in trajectories]
    assert trajectories_from_proto(msgs) == trajectories


def test_step_label_round_trip() -> None:
    label = StepLabel(4, (Criterion.SELF_CORRECTION,), "fixes the pickup")
    assert step_label_from_proto(step_label_to_proto(label)) == label


def bad(mutate: str) -> trajectory_pb2.Trajectory:
    msg = trajectory_to_proto(trajectory())
    if mutate == "role":
        msg.messages[5].role = trajectory_pb2.ROLE_UNSPECIFIED
    elif mutate == "role-unknown":
        msg.messages[5].role = 17  # type: ignore[assignment]  # proto3 enums are open
    elif mutate == "id":
        msg.id = ""
    elif mutate == "train":
        msg.messages[1].train = True
    elif mutate == "criterion":
        msg.labels[0].criteria[1] = trajectory_pb2.CRITERION_UNSPECIFIED
    elif mutate == "no-criteria":
        del msg.labels[0].criteria[:]
    elif mutate == "range":
        msg.labels.add(step_index=3, criteria=[trajectory_pb2.CRITERION_CRITICAL_ACTION])
    elif mutate == "disagree":
        msg.labels[0].step_index = 0  # step 0 has train=false
    return msg


@pytest.mark.parametrize(
    ("mutate", "field_path", "message"),
    [
        (
            "role",
            "trajectories[2].messages[5].role",
            "role must be one of SYSTEM, USER, ASSISTANT, TOOL, got 0",
        ),
        ("role-unknown", "trajectories[2].messages[5].role", "got 17"),
        ("id", "trajectories[2].id", "non-empty id"),
        ("train", "trajectories[2].messages[1].train", "only assistant turns may have train=true"),
        ("criterion", "trajectories[2].labels[0].criteria[1]", "got 0"),
        ("no-criteria", "trajectories[2].labels[0].criteria", "at least one criterion"),
        ("range", "trajectories[2].labels[1].step_index", "step 3 is outside the 3 assistant turns"),
        ("disagree", "trajectories[2].labels[0].step_index", "train=false"),
    ],
)
def test_invalid_trajectories_name_the_field(mutate: str, field_path: str, message: str) -> None:
    good = trajectory_to_proto(trajectory())
    with pytest.raises(InvalidArgument) as caught:
        trajectories_from_proto([good, good, bad(mutate)])
    assert caught.value.field_path == field_path
    assert message in caught.value.message
    assert caught.value.code == "INVALID_ARGUMENT"


def test_default_field_path_is_trajectory() -> None:
    with pytest.raises(InvalidArgument) as caught:
        trajectory_from_proto(bad("role"))
    assert str(caught.value).startswith("trajectory.messages[5].role: ")


def _without_metadata_and_labels(t: Trajectory) -> Trajectory:
    return Trajectory(t.id, t.messages, t.source_env, t.task)


def test_columns_round_trip_turns_train_flags_tasks_and_envs() -> None:
    trajectories = [trajectory(), *read_file(SAMPLE)]
    columns = trajectories_to_columns(trajectories)
    assert len(columns.train) == len(columns.contents) == sum(len(t.messages) for t in trajectories)
    wire = trajectory_pb2.TrajectoryColumns.FromString(columns.SerializeToString())
    # Metadata and labels are not carried: that is the documented price of the cheap form.
    assert trajectories_from_columns(wire) == [_without_metadata_and_labels(t) for t in trajectories]


def test_columns_leave_out_what_no_trajectory_states() -> None:
    plain = Trajectory("p", [Message(Role.USER, "go"), Message(Role.ASSISTANT, "Action: go")])
    columns = trajectories_to_columns([plain, plain])
    assert (columns.train, list(columns.tasks), list(columns.source_envs)) == (b"", [], [])
    assert columns.roles == bytes([trajectory_pb2.ROLE_USER, trajectory_pb2.ROLE_ASSISTANT] * 2)
    assert trajectories_from_columns(columns) == [plain, plain]


@pytest.mark.parametrize(
    ("mutate", "field_path", "message"),
    [
        ("role", "columns.roles[11]", "got 0"),
        ("role-unknown", "columns.roles[11]", "got 17"),
        ("train", "columns.train[7]", "only assistant turns may have train=true"),
        ("train-byte", "columns.train[7]", "got 9"),
        ("id", "columns.ids[1]", "non-empty id"),
    ],
)
def test_a_bad_trajectory_in_columns_fails_alone(mutate: str, field_path: str, message: str) -> None:
    columns = trajectories_to_columns([trajectory()] * 3)
    roles, train = bytearray(columns.roles), bytearray(columns.train)
    if mutate == "role":
        roles[11] = trajectory_pb2.ROLE_UNSPECIFIED  # trajectory 1, message 5
    elif mutate == "role-unknown":
        roles[11] = 17
    elif mutate == "train":
        train[7] = 2  # trajectory 1, message 1: a user turn
    elif mutate == "train-byte":
        train[7] = 9
    elif mutate == "id":
        columns.ids[1] = ""
    columns.roles, columns.train = bytes(roles), bytes(train)
    first, failed, last = trajectories_from_columns(columns)
    assert isinstance(first, Trajectory) and isinstance(last, Trajectory)
    assert isinstance(failed, InvalidArgument)
    assert failed.field_path == field_path
    assert message in failed.message


@pytest.mark.parametrize(
    ("mutate", "field_path"),
    [
        ("counts", "columns.message_counts"),
        ("contents", "columns.contents"),
        ("roles", "columns.roles"),
        ("train", "columns.train"),
        ("tasks", "columns.tasks"),
        ("source_envs", "columns.source_envs"),
    ],
)
def test_columns_that_disagree_in_length_fail_as_a_whole(mutate: str, field_path: str) -> None:
    columns = trajectories_to_columns([trajectory()] * 2)
    if mutate == "counts":
        columns.message_counts.append(1)
    elif mutate == "contents":
        columns.contents.append("one too many")
    elif mutate == "roles":
        columns.roles = columns.roles[:-1]
    elif mutate == "train":
        columns.train = columns.train + b"\x00"
    elif mutate == "tasks":
        del columns.tasks[1:]
    elif mutate == "source_envs":
        columns.source_envs.append("extra")
    with pytest.raises(InvalidArgument) as caught:
        trajectories_from_columns(columns, field_path="req.columns")
    assert caught.value.field_path == f"req.{field_path}"


def test_dataset_formats_map_both_ways() -> None:
    for name in FORMAT_NAMES:
        value = dataset_format_to_proto(name)
        assert dataset_pb2.DatasetFormat.Name(value) == f"DATASET_FORMAT_{name.upper()}"
        assert dataset_format_from_proto(value) == name
    for unset in (None, "", "auto"):
        assert dataset_format_to_proto(unset) == dataset_pb2.DATASET_FORMAT_UNSPECIFIED
    assert dataset_format_from_proto(dataset_pb2.DATASET_FORMAT_UNSPECIFIED) is None
    assert len(dataset_pb2.DatasetFormat.values()) == len(FORMAT_NAMES) + 1  # a new enum value needs a name
    with pytest.raises(InvalidArgument, match="unknown dataset format 'trl'"):
        dataset_format_to_proto("trl")
    with pytest.raises(InvalidArgument) as caught:
        dataset_format_from_proto(9, field_path="dataset.format")
    assert caught.value.field_path == "dataset.format"


def test_job_states_map_both_ways() -> None:
    for name in JOB_STATE_NAMES:
        value = job_state_to_proto(name)
        assert job_pb2.JobState.Name(value) == f"JOB_STATE_{name}"
        assert job_state_from_proto(value) == name
    assert len(job_pb2.JobState.values()) == len(JOB_STATE_NAMES) + 1
    assert job_state_from_proto(job_pb2.JOB_STATE_UNSPECIFIED) is None
    with pytest.raises(ValueError):
        job_state_to_proto("running")
    with pytest.raises(InvalidArgument) as caught:
        job_state_from_proto(42, field_path="filter.state")
    assert caught.value.field_path == "filter.state"
