"""Dataset formats: round trips, strict reading with file:line:field errors, detection, local files."""

from __future__ import annotations

import copy
import gzip
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas.data.formats import (
    FORMAT_NAMES,
    MAX_KEPT_ERRORS,
    ReadReport,
    RecordError,
    check_labels,
    decode,
    decode_lines,
    detect_format,
    dump_line,
    encode,
    read_file,
    write_file,
)
from atlas.data.model import Criterion, Message, Role, StepLabel, Trajectory
from atlas.errors import InvalidArgument

SAMPLE = Path(__file__).parent / "data" / "formats" / "babyai_agentgym.jsonl"
LOSSLESS = ("agentgym", "axolotl")  # everything survives
KEEPS_EXTRAS = ("agentgym", "axolotl", "sharegpt")  # ids, env, task, metadata, labels survive


def rich_trajectory() -> Trajectory:
    """Every feature at once: all four roles, all three train states, unicode, extras, labels."""
    return Trajectory(
        id="traj-1",
        messages=[
            Message(Role.SYSTEM, "You are an agent.", None),
            Message(Role.USER, "Your goal: go to the red ball\nYou see a wall.", False),
            Message(Role.ASSISTANT, "Thought: turn first.\nAction: turn left", False),
            Message(Role.TOOL, "You see a red ball 1 — 2 steps ahead \u2028 (ünïcode).", None),
            Message(Role.ASSISTANT, "Thought: there it is.\nAction: go to red ball 1", True),
            Message(Role.USER, "Task completed.", False),
            Message(Role.ASSISTANT, "Done.", None),
        ],
        source_env="babyai/GoToLocal",
        task="go to the red ball",
        metadata={"seed": "7", "success": "true"},
        labels=[StepLabel(1, (Criterion.CRITICAL_OBSERVATION, Criterion.CRITICAL_ACTION), "spots the ball")],
    )


def without_masks(t: Trajectory) -> Trajectory:
    return Trajectory(
        t.id,
        [Message(m.role, m.content, None) for m in t.messages],
        t.source_env,
        t.task,
        t.metadata,
        t.labels,
    )


def assistant_view(t: Trajectory) -> list[tuple[Role, str, bool | None]]:
    """What every format keeps: roles, content, and the assistant train flags."""
    return [(m.role, m.content, m.train if m.role is Role.ASSISTANT else None) for m in t.messages]


def sample_lines() -> list[str]:
    return SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)


# ------------------------------------------------------------------------------------------ the sample


def test_sample_reads_as_agentgym_with_critical_steps() -> None:
    report = ReadReport()
    trajectories = list(read_file(SAMPLE, report=report))
    assert report == ReadReport(records_ok=3)
    assert [t.id for t in trajectories] == ["babyai_17", "babyai_42", "babyai_93"]
    first, second, third = trajectories
    assert [m.role for m in first.messages[:3]] == [Role.USER, Role.ASSISTANT, Role.USER]
    assert first.messages[0].train is None and first.messages[1].train is False
    assert [t.trained_steps() for t in trajectories] == [[1, 2], [2, 4], [1, 2]]
    assert second.source_env == "babyai/PickupLoc" and second.metadata["seed"] == "42"
    assert [label.step_index for label in second.labels] == [2, 4]
    assert second.labels[1].criteria == (Criterion.SELF_CORRECTION,)
    assert third.id == "babyai_93"  # AgentInstruct-style "id" instead of "item_id"
    assert all(m.content.startswith("Thought:\n") for m in second.messages if m.train)


# ----------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", LOSSLESS)
def test_lossless_round_trip(fmt: str) -> None:
    t = rich_trajectory()
    assert decode(json.loads(dump_line(t, fmt)), fmt) == t


def test_sharegpt_round_trip_keeps_everything_but_masks() -> None:
    t = rich_trajectory()
    record = encode(t, "sharegpt")
    assert {"loss", "train", "weight"}.isdisjoint(k for turn in record["conversations"] for k in turn)
    assert decode(record, "sharegpt") == without_masks(t)


@pytest.mark.parametrize(("a", "b"), list(itertools.permutations(KEEPS_EXTRAS, 2)))
def test_cross_format_round_trip_keeps_extras(a: str, b: str) -> None:
    t = without_masks(rich_trajectory()) if "sharegpt" in (a, b) else rich_trajectory()
    via_a = decode(encode(t, a), a)
    assert decode(encode(via_a, b), b) == t


@pytest.mark.parametrize("other", [f for f in FORMAT_NAMES if f != "openai"])
def test_openai_round_trip_with_others_keeps_roles_content_and_masks(other: str) -> None:
    t = rich_trajectory()
    via_openai = decode(encode(t, "openai"), "openai")
    assert assistant_view(via_openai) == assistant_view(t)
    back = decode(encode(via_openai, other), other)
    expected = assistant_view(without_masks(t) if other == "sharegpt" else t)
    assert assistant_view(back) == expected
    from_other = decode(encode(t, other), other)
    assert assistant_view(decode(encode(from_other, "openai"), "openai")) == assistant_view(from_other)


def test_sample_converts_through_every_format() -> None:
    for t in read_file(SAMPLE):
        for fmt in FORMAT_NAMES:
            back = decode(json.loads(dump_line(t, fmt)), fmt)
            if fmt in LOSSLESS:
                assert back == t
            expected = without_masks(t) if fmt == "sharegpt" else t
            assert assistant_view(back) == assistant_view(expected)


# ------------------------------------------------------------------------------------- what is written


def test_openai_writer_emits_only_messages_and_assistant_weights() -> None:
    record = encode(rich_trajectory(), "openai")
    assert list(record) == ["messages"]
    weights = [(m["role"], m.get("weight")) for m in record["messages"]]
    assert weights == [
        ("system", None),
        ("user", None),
        ("assistant", 0),
        ("tool", None),
        ("assistant", 1),
        ("user", None),
        ("assistant", None),  # train=None: no weight key at all
    ]
    assert "weight" not in record["messages"][6]


def test_agentgym_writes_tool_turns_as_human_and_remembers_them() -> None:
    record = encode(rich_trajectory(), "agentgym")
    assert list(record) == ["item_id", "conversations", "atlas"]
    assert [turn["from"] for turn in record["conversations"]] == [
        "system",
        "human",
        "gpt",
        "human",
        "gpt",
        "human",
        "gpt",
    ]
    assert [turn["loss"] for turn in record["conversations"]] == [None, False, False, None, True, False, None]
    assert record["atlas"]["tool_turns"] == [3]
    assert "id" not in record["atlas"]  # the id has a native key


def test_axolotl_record_layout() -> None:
    record = encode(rich_trajectory(), "axolotl")
    assert record["messages"][0] == {"role": "system", "content": "You are an agent."}
    assert record["messages"][4] == {
        "role": "assistant",
        "content": "Thought: there it is.\nAction: go to red ball 1",
        "train": True,
    }
    assert record["atlas"]["id"] == "traj-1"
    assert record["atlas"]["labels"] == [
        {
            "step_index": 1,
            "criteria": ["CRITICAL_OBSERVATION", "CRITICAL_ACTION"],
            "rationale": "spots the ball",
        }
    ]


@pytest.mark.parametrize("fmt", ["agentgym", "sharegpt"])
def test_atlas_key_omitted_when_empty(fmt: str) -> None:
    t = Trajectory("x", [Message(Role.USER, "hi"), Message(Role.ASSISTANT, "hello", True)])
    assert "atlas" not in encode(t, fmt)
    assert decode(encode(t, fmt), fmt) == (t if fmt == "agentgym" else without_masks(t))


def test_dump_line_is_compact_utf8_json_line() -> None:
    line = dump_line(rich_trajectory(), "axolotl")
    assert line.endswith("\n") and line.count("\n") == 1
    assert '"role":"system"' in line and "ünïcode" in line and "\u2028" in line


def test_records_without_an_id_get_file_and_line() -> None:
    lines = [
        "\n",
        '{"messages":[{"role":"user","content":"a"}]}\n',
        '{"messages":[{"role":"user","content":"b"}]}\n',
    ]
    ids = [t.id for t in decode_lines(lines, source="/data/run/part-0.jsonl")]
    assert ids == ["part-0.jsonl:2", "part-0.jsonl:3"]
    record = {"conversations": [{"from": "gpt", "value": "b"}]}
    assert decode(record, "sharegpt", source="s3://bucket/x.jsonl", line=9).id == "x.jsonl:9"


# -------------------------------------------------------------------------------------- strict reading

GOOD: dict[str, dict[str, Any]] = {
    "agentgym": {
        "item_id": "a",
        "conversations": [
            {"from": "human", "loss": None, "value": "go"},
            {"from": "gpt", "loss": True, "value": "ok"},
        ],
    },
    "openai": {
        "messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": "ok", "weight": 1}]
    },
    "axolotl": {
        "messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": "ok", "train": True}]
    },
    "sharegpt": {
        "id": "a",
        "conversations": [{"from": "human", "value": "go"}, {"from": "gpt", "value": "ok"}],
    },
}


def broken(fmt: str, path: str, value: Any) -> dict[str, Any]:
    """GOOD[fmt] with ``value`` set at a dotted path (``conversations.1.loss``); ``...`` deletes it."""
    record = copy.deepcopy(GOOD[fmt])
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    holder: Any = record
    for part in parents:
        holder = holder.setdefault(part, {}) if isinstance(part, str) else holder[part]
    if value is ...:
        del holder[last]
    else:
        holder[last] = value
    return record


BAD_RECORDS = [
    ("agentgym", "conversations", ..., "conversations", "missing"),
    ("agentgym", "conversations", {"a": 1}, "conversations", "must be an array, got an object"),
    ("agentgym", "conversations", [], "conversations", "at least one turn"),
    ("agentgym", "conversations.1", "gpt", "conversations[1]", "must be an object"),
    ("agentgym", "conversations.1.from", "bot", "conversations[1].from",
     'must be one of system, human, gpt, got "bot"'),
    ("agentgym", "conversations.1.from", "tool", "conversations[1].from", "read this file as sharegpt"),
    ("agentgym", "conversations.1.from", ..., "conversations[1].from", "missing"),
    ("agentgym", "conversations.1.value", 3, "conversations[1].value", "must be a string, got a number"),
    ("agentgym", "conversations.1.value", ..., "conversations[1].value", "missing"),
    ("agentgym", "conversations.0.loss", True, "conversations[0].loss",
     "only assistant turns may carry loss"),
    ("agentgym", "conversations.1.loss", "yes", "conversations[1].loss", "must be true, false or null"),
    ("agentgym", "item_id", 5, "item_id", "non-empty string"),
    ("agentgym", "item_id", "", "item_id", "non-empty string"),
    ("openai", "messages.0.weight", 0, "messages[0].weight", "only assistant messages may carry a weight"),
    ("openai", "messages.1.weight", 2, "messages[1].weight", "must be 0 or 1, got 2"),
    ("openai", "messages.1.weight", True, "messages[1].weight", "must be 0 or 1, got true"),
    ("openai", "messages.1.role", "developer", "messages[1].role", 'got "developer"'),
    ("openai", "messages.1.content", None, "messages[1].content", "must be a string, got null"),
    ("openai", "messages.1.train", True, "messages[1].train", "read this file as axolotl"),
    ("axolotl", "messages.0.train", True, "messages[0].train", "only assistant turns may carry loss"),
    ("axolotl", "messages.1.weight", 1, "messages[1].weight", "read this file as openai"),
    ("axolotl", "messages.1.content", ["a"], "messages[1].content", "must be a string, got an array"),
    ("sharegpt", "conversations.1.loss", True, "conversations[1].loss", "read this file as agentgym"),
    ("sharegpt", "atlas", [], "atlas", "must be an object"),
    ("sharegpt", "atlas.tool_turns", [0], "atlas.tool_turns", "unknown key"),
    ("agentgym", "atlas.tool_turns", [1], "atlas.tool_turns[0]", "turn 1 is not a human turn"),
    ("agentgym", "atlas.tool_turns", [9], "atlas.tool_turns[0]", "position of a human turn"),
    ("axolotl", "atlas.source_env", 1, "atlas.source_env", "must be a string"),
    ("axolotl", "atlas.id", "", "atlas.id", "non-empty string"),
    ("axolotl", "atlas.metadata", {"seed": 7}, "atlas.metadata.seed", "must be a string, got a number"),
    ("axolotl", "atlas.labels", {}, "atlas.labels", "must be an array"),
    ("axolotl", "atlas.labels", [{"step_index": 1, "criteria": ["CRITICAL_ACTION"]}],
     "atlas.labels[0].step_index", "outside the 1 assistant turns"),
    ("axolotl", "atlas.labels", [{"criteria": ["CRITICAL_ACTION"]}],
     "atlas.labels[0].step_index", "missing"),
    ("axolotl", "atlas.labels", [{"step_index": "0", "criteria": []}],
     "atlas.labels[0].step_index", "integer"),
    ("axolotl", "atlas.labels", [{"step_index": 0, "criteria": ["CRITICAL_ACTION", "LUCK"]}],
     "atlas.labels[0].criteria[1]", 'unknown criterion "LUCK"'),
    ("axolotl", "atlas.labels", [{"step_index": 0, "criteria": []}],
     "atlas.labels[0].criteria", "at least one"),
    ("axolotl", "atlas.labels", [{"step_index": 0, "criteria": ["PLAN_CREATION"], "why": "x"}],
     "atlas.labels[0].why", "unknown key"),
    ("axolotl", "atlas.labels", [{"step_index": 0, "criteria": ["PLAN_CREATION"]}] * 2,
     "atlas.labels[1].step_index", "labelled twice"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "path", "value", "field", "message"), BAD_RECORDS)
def test_bad_records_name_the_field(fmt: str, path: str, value: Any, field: str, message: str) -> None:
    record = broken(fmt, path, value)
    with pytest.raises(RecordError) as caught:
        decode(record, fmt, source="data.jsonl", line=4)
    err = caught.value
    assert (err.source, err.line, err.field) == ("data.jsonl", 4, field)
    assert message in err.message
    assert str(err) == f"data.jsonl:4: {field}: {err.message}"
    assert isinstance(err, InvalidArgument) and err.code == "INVALID_ARGUMENT" and err.field_path == field


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_good_records_decode(fmt: str) -> None:
    t = decode(GOOD[fmt], fmt)
    assert [m.role for m in t.messages] == [Role.USER, Role.ASSISTANT]


def test_labels_must_agree_with_train_flags() -> None:
    record = broken("axolotl", "messages.1.train", False)
    record["atlas"] = {"labels": [{"step_index": 0, "criteria": ["CRITICAL_ACTION"]}]}
    with pytest.raises(RecordError, match=r"atlas\.labels\[0\]\.step_index: step 0 is labelled critical"):
        decode(record, "axolotl")


def test_labelled_step_without_a_stated_flag_is_accepted() -> None:
    record = broken("sharegpt", "atlas.labels", [{"step_index": 0, "criteria": ["PLAN_CREATION"]}])
    assert decode(record, "sharegpt").labels == [StepLabel(0, (Criterion.PLAN_CREATION,))]


def test_check_labels_uses_the_callers_field_path() -> None:
    t = rich_trajectory()
    check_labels(t)
    t.labels.append(StepLabel(0, (Criterion.PLAN_CREATION,)))  # step 0 has train=False
    with pytest.raises(InvalidArgument) as caught:
        check_labels(t, field_path="trajectories[3].labels")
    assert caught.value.field_path == "trajectories[3].labels[1].step_index"


# ----------------------------------------------------------------------------------------- line streams


def test_broken_line_7_is_reported_with_line_and_field(tmp_path: Path) -> None:
    lines = [line for line in sample_lines() for _ in range(3)]  # 9 records
    record = json.loads(lines[6])
    record["conversations"][3]["from"] = "robot"
    lines[6] = json.dumps(record) + "\n"
    path = tmp_path / "broken.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    trajectories = read_file(path)
    assert len([next(trajectories) for _ in range(6)]) == 6
    with pytest.raises(RecordError) as caught:
        next(trajectories)
    assert caught.value.line == 7
    assert f"{path}:7: conversations[3].from: must be one of" in str(caught.value)


def test_invalid_json_and_non_objects() -> None:
    lines = ['{"messages": [}\n', "[1, 2]\n", '"text"\n', "{}\n"]
    report = ReadReport()
    assert list(decode_lines(lines, source="f.jsonl", errors="skip", report=report)) == []
    messages = [str(e) for e in report.errors]
    assert messages[0].startswith("f.jsonl:1: not valid JSON: ")
    assert messages[1] == "f.jsonl:2: a record must be a JSON object, got an array"
    assert messages[2] == "f.jsonl:3: a record must be a JSON object, got a string"
    assert "cannot detect the format" in messages[3]


def test_skip_mode_counts_and_keeps_going() -> None:
    good = sample_lines()
    lines = [good[0], "not json\n", "\n", good[1], '{"messages": 3}\n', good[2]]
    report = ReadReport()
    ids = [t.id for t in decode_lines(lines, source="s.jsonl", errors="skip", report=report)]
    assert ids == ["babyai_17", "babyai_42", "babyai_93"]
    assert (report.records_ok, report.records_bad) == (3, 2)
    assert [(e.line, e.field) for e in report.errors] == [(2, ""), (5, "conversations")]  # agentgym, fixed


def test_raise_mode_also_records_the_error() -> None:
    report = ReadReport()
    with pytest.raises(RecordError):
        list(decode_lines(["nope\n"], source="r.jsonl", report=report))
    assert report.records_bad == 1 and report.errors[0].line == 1


def test_report_keeps_at_most_max_errors_but_counts_all() -> None:
    report = ReadReport()
    lines = (f"bad {i}\n" for i in range(MAX_KEPT_ERRORS + 5))
    assert list(decode_lines(lines, source="many.jsonl", errors="skip", report=report)) == []
    assert report.records_bad == MAX_KEPT_ERRORS + 5
    assert len(report.errors) == MAX_KEPT_ERRORS
    assert report.errors[-1].line == MAX_KEPT_ERRORS


def test_blank_lines_are_skipped_but_counted() -> None:
    good = sample_lines()
    lines = ["\n", "   \n", good[0], "\r\n", "broken\n"]
    stream = decode_lines(lines, source="b.jsonl")
    assert next(stream).id == "babyai_17"
    with pytest.raises(RecordError, match=r"^b\.jsonl:5: "):
        next(stream)


def test_decode_lines_streams_lazily() -> None:
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        for line in itertools.cycle(sample_lines()):
            consumed += 1
            yield line

    stream = decode_lines(lines(), source="endless.jsonl")
    assert [next(stream).id for _ in range(4)] == ["babyai_17", "babyai_42", "babyai_93", "babyai_17"]
    assert consumed == 4


# ------------------------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        ({"messages": [{"role": "assistant", "content": "x", "weight": 0}]}, "openai"),
        ({"messages": [{"role": "assistant", "content": "x", "train": True}]}, "axolotl"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "axolotl"),
        ({"conversations": [{"from": "gpt", "value": "x", "loss": True}]}, "agentgym"),
        ({"conversations": [{"from": "gpt", "value": "x"}]}, "agentgym"),
        ({"conversations": [{"from": "tool", "value": "x"}, {"from": "gpt", "value": "x"}]}, "sharegpt"),
    ],
)
def test_detect_format(record: dict[str, Any], fmt: str) -> None:
    assert detect_format(record) == fmt
    assert decode(record, "auto").messages[-1].content == "x"


def test_detect_format_rejects_unknown_shapes() -> None:
    with pytest.raises(InvalidArgument, match="cannot detect"):
        detect_format({"text": "hello"})


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_auto_reads_every_written_format(fmt: str, tmp_path: Path) -> None:
    trajectories = list(read_file(SAMPLE))
    path = tmp_path / f"sample.{fmt}.jsonl"
    assert write_file(path, trajectories, fmt) == 3
    back = list(read_file(path))
    for original, read in zip(trajectories, back, strict=True):
        expected = without_masks(original) if fmt == "sharegpt" else original
        assert assistant_view(read) == assistant_view(expected)


def test_auto_fixes_the_format_after_the_first_record() -> None:
    plain = '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}\n'
    weighted = '{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":1}]}\n'
    stream = decode_lines([plain, weighted], source="mixed.jsonl")
    assert next(stream).messages[1].train is None  # detected as axolotl
    with pytest.raises(
        RecordError, match=r"mixed\.jsonl:2: messages\[1\]\.weight: .*read this file as openai"
    ):
        next(stream)
    assert [t.trained_steps() for t in decode_lines([plain, weighted], source="m", fmt="openai")] == [[], [0]]


def test_unknown_format_names_are_rejected_up_front() -> None:
    with pytest.raises(InvalidArgument, match="unknown dataset format 'alpaca'"):
        decode_lines([], source="x", fmt="alpaca")
    with pytest.raises(InvalidArgument):
        encode(rich_trajectory(), "auto")
    with pytest.raises(InvalidArgument):
        read_file("missing.jsonl", fmt="trl")


# ---------------------------------------------------------------------------------------- local files


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_write_and_read_files(tmp_path: Path, name: str) -> None:
    trajectories = [rich_trajectory(), *read_file(SAMPLE)]
    path = tmp_path / name
    assert write_file(path, trajectories, "axolotl") == 4
    assert list(read_file(path)) == trajectories
    raw = path.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert raw.decode("utf-8").count("\n") == 4  # U+2028 inside a string does not split a line


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    trajectories = list(read_file(SAMPLE))
    write_file(tmp_path / "a.jsonl.gz", trajectories, "agentgym")
    (tmp_path / "b").mkdir()
    write_file(tmp_path / "b" / "a.jsonl.gz", trajectories, "agentgym")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b" / "a.jsonl.gz").read_bytes()


def test_agentgym_file_matches_agentgym_layout(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_file(path, read_file(SAMPLE), "agentgym")
    assert path.read_text(encoding="utf-8").splitlines()[0] == json.dumps(
        json.loads(sample_lines()[0]), ensure_ascii=False, separators=(",", ":")
    )


def test_decode_lines_accepts_a_text_stream() -> None:
    text = io.StringIO("".join(sample_lines()))
    assert len(list(decode_lines(text, source="mem.jsonl", fmt="agentgym"))) == 3
