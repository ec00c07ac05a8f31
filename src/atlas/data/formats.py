"""Dataset formats: JSON Lines records <-> :class:`~atlas.data.model.Trajectory`.

The fleet reads and writes the formats its users' tools already speak, one record per line:

``agentgym``  AgentGym / AgentInstruct: ``{"item_id", "conversations": [{"from", "loss", "value"}]}``.
              ``from`` is ``human``/``gpt``/``system``; a critical step is a ``gpt`` turn with
              ``loss: true``. ``id`` is read where ``item_id`` is missing (AgentInstruct uses it).
``openai``    OpenAI fine-tuning chat: ``{"messages": [{"role", "content", "weight": 0|1}]}``, weight
              on assistant messages only. The writer emits nothing but ``messages`` because OpenAI's
              upload validator rejects unknown keys.
``axolotl``   axolotl ``chat_template`` datasets: ``{"messages": [{"role", "content", "train"}]}``.
``sharegpt``  ``{"id", "conversations": [{"from", "value"}]}`` with ``from`` in
              ``system``/``human``/``gpt``/``tool``; it has no masks (read as ``train=None``).

What a format cannot hold natively (the id where it has no id key, ``source_env``, ``task``,
``metadata``, labels with criteria and rationale) goes under a top-level ``"atlas"`` object, written by
the agentgym, axolotl and sharegpt writers (omitted when empty), so those three round-trip everything
except what the format's turns themselves cannot carry. Every reader accepts ``"atlas"``.

Deliberate losses, in one place:
- AgentGym has no tool role. Tool turns are written as ``human`` turns, which is how AgentGym itself
  carries observations, and their positions are recorded in ``atlas.tool_turns`` so our reader
  restores them; other tools see them as observations.
- ShareGPT drops the train flags (labels in ``atlas`` survive).
- OpenAI drops everything but roles, content and assistant weights; ``train=False`` on a
  non-assistant turn reads back as ``None``.

Reading is strict because a silently wrong mask wastes a training run: every problem is a
:class:`RecordError` naming the file, the 1-based line and the field path. Keys we do not know are
ignored in the records (datasets carry extra columns) but rejected inside ``"atlas"``, which is ours. A
file must not mix mask conventions: the axolotl reader rejects ``weight``, the openai reader ``train``
and the sharegpt reader ``loss``, so a misdetected file fails loudly instead of losing its masks.

Detection (:func:`detect_format`) looks at one record: ``messages`` with a ``weight`` anywhere is
openai, other ``messages`` records are axolotl (it reads the same turns and also our ``atlas``
extras); ``conversations`` with a ``tool`` speaker is sharegpt, other ``conversations`` records are
agentgym, because its reader accepts every such sharegpt record and keeps ``loss`` flags that later
records may carry, and a dataset written back in the detected format keeps its masks.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from atlas.data.model import Criterion, Message, Role, StepLabel, Trajectory
from atlas.errors import InvalidArgument

FORMAT_NAMES = ("agentgym", "openai", "axolotl", "sharegpt")
MAX_KEPT_ERRORS = 1000
"""How many errors a :class:`ReadReport` keeps by default (it keeps counting beyond)."""

_ROLE_NAMES = {role.value: role for role in Role}
_CRITERIA = {criterion.value: criterion for criterion in Criterion}
_CONVERSATION_SPEAKERS = {"system": Role.SYSTEM, "human": Role.USER, "gpt": Role.ASSISTANT}
_SHAREGPT_SPEAKERS = {**_CONVERSATION_SPEAKERS, "tool": Role.TOOL}
_SPEAKER_NAMES = {Role.SYSTEM: "system", Role.USER: "human", Role.ASSISTANT: "gpt", Role.TOOL: "tool"}
_AGENTGYM_NAMES = {**_SPEAKER_NAMES, Role.TOOL: "human"}  # AgentGym carries observations as human turns
_ATLAS_KEYS = ("id", "source_env", "task", "metadata", "labels")
_LABEL_KEYS = ("step_index", "criteria", "rationale")


class RecordError(InvalidArgument):
    """One bad record: ``str(err) == f"{source}:{line}: {field}: {message}"`` (no field part when empty)."""

    def __init__(self, source: str, line: int, field: str, message: str) -> None:
        super().__init__(message, field_path=field)
        self.source = source
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclasses.dataclass
class ReadReport:
    """What a read saw. ``errors`` keeps the first ``max_errors`` so a huge bad file stays cheap to
    report; ``records_bad`` keeps counting."""

    records_ok: int = 0
    records_bad: int = 0
    errors: list[RecordError] = dataclasses.field(default_factory=list)
    max_errors: int = MAX_KEPT_ERRORS

    def add_error(self, error: RecordError) -> None:
        self.records_bad += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(error)


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """How one format spells a turn list, so a single reader serves all four."""

    turns: str
    speaker: str
    text: str
    mask: str | None
    speakers: dict[str, Role]
    id_keys: tuple[str, ...]
    foreign_mask: tuple[str, str] | None  # (sibling format's mask key, sibling format)


_LAYOUTS = {
    "agentgym": _Layout(
        "conversations", "from", "value", "loss", _CONVERSATION_SPEAKERS, ("item_id", "id"), None
    ),
    "sharegpt": _Layout(
        "conversations", "from", "value", None, _SHAREGPT_SPEAKERS, ("id",), ("loss", "agentgym")
    ),
    "openai": _Layout("messages", "role", "content", "weight", _ROLE_NAMES, (), ("train", "axolotl")),
    "axolotl": _Layout("messages", "role", "content", "train", _ROLE_NAMES, (), ("weight", "openai")),
}


class _Bad(Exception):
    """A problem at a field path; turned into a RecordError once the source and line are known."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: object) -> str:
    """The JSON name of a value's type, for error messages read by people who wrote JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _check_format(fmt: str, *, allow_auto: bool = False) -> None:
    if fmt in FORMAT_NAMES or (allow_auto and fmt == "auto"):
        return
    expected = ", ".join(FORMAT_NAMES + (("auto",) if allow_auto else ()))
    raise InvalidArgument(f"unknown dataset format {fmt!r}; expected one of {expected}", field_path="format")


# ---------------------------------------------------------------------------------------------- read


def detect_format(obj: dict[str, Any]) -> str:
    """The format one record is written in (see the module docstring for the defaults and why)."""
    try:
        return _detect(obj)
    except _Bad as bad:
        raise InvalidArgument(bad.message, field_path=bad.field) from None


def _detect(obj: object) -> str:
    if not isinstance(obj, dict):
        raise _Bad("", f"a record must be a JSON object, got {_kind(obj)}")
    if "messages" in obj:
        turns = obj["messages"]
        weighted = isinstance(turns, list) and any(isinstance(t, dict) and "weight" in t for t in turns)
        return "openai" if weighted else "axolotl"
    if "conversations" in obj:
        turns = obj["conversations"]
        tool = isinstance(turns, list) and any(isinstance(t, dict) and t.get("from") == "tool" for t in turns)
        return "sharegpt" if tool else "agentgym"
    raise _Bad("", "cannot detect the format: a record needs a 'messages' or a 'conversations' list")


def decode(obj: object, fmt: str, *, source: str = "<record>", line: int = 1) -> Trajectory:
    """One parsed JSON record as a Trajectory; ``fmt`` may be ``"auto"``. Raises :class:`RecordError`."""
    _check_format(fmt, allow_auto=True)
    try:
        return _decode(obj, _detect(obj) if fmt == "auto" else fmt, f"{os.path.basename(source)}:{line}")
    except _Bad as bad:
        raise RecordError(source, line, bad.field, bad.message) from None


def decode_lines(
    lines: Iterable[str],
    *,
    source: str,
    fmt: str = "auto",
    errors: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> Iterator[Trajectory]:
    """Stream Trajectories from JSON Lines, one line in memory at a time.

    Line numbers are 1-based and count blank lines, which are skipped. With ``fmt="auto"`` the
    format is detected from the first good record and then fixed for the rest of the input. With
    ``errors="skip"`` a bad line is counted in ``report`` and skipped instead of raised. Feed lines
    split on ``"\\n"`` only (a file object does): ``str.splitlines`` also splits on characters such as
    U+2028 that JSON strings may hold raw.
    """
    _check_format(fmt, allow_auto=True)
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
    return _decode_stream(lines, source, fmt, errors, ReadReport() if report is None else report)


def _decode_stream(
    lines: Iterable[str], source: str, fmt: str, errors: str, report: ReadReport
) -> Iterator[Trajectory]:
    base = os.path.basename(source)
    for number, text in enumerate(lines, start=1):
        if not text or text.isspace():
            continue
        try:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _Bad("", f"not valid JSON: {exc.msg} (column {exc.colno})") from None
            if fmt == "auto":
                fmt = _detect(obj)
            trajectory = _decode(obj, fmt, f"{base}:{number}")
        except _Bad as bad:
            error = RecordError(source, number, bad.field, bad.message)
            report.add_error(error)
            if errors == "raise":
                raise error from None
            continue
        report.records_ok += 1
        yield trajectory


def _decode(obj: object, fmt: str, fallback_id: str) -> Trajectory:
    if not isinstance(obj, dict):
        raise _Bad("", f"a record must be a JSON object, got {_kind(obj)}")
    layout = _LAYOUTS[fmt]
    messages = _read_turns(obj, layout)
    extras = obj.get("atlas", {})
    if not isinstance(extras, dict):
        raise _Bad("atlas", f"must be an object, got {_kind(extras)}")
    allowed = _ATLAS_KEYS + (("tool_turns",) if fmt == "agentgym" else ())
    for key in extras:
        if key not in allowed:
            raise _Bad(f"atlas.{key}", f"unknown key; in {fmt} records it holds {', '.join(allowed)}")
    if "tool_turns" in extras:
        _restore_tool_turns(extras["tool_turns"], messages)
    trajectory = Trajectory(
        id=_read_id(obj, layout, extras) or fallback_id,
        messages=messages,
        source_env=_optional_str(extras, "source_env"),
        task=_optional_str(extras, "task"),
        metadata=_read_metadata(extras),
        labels=_read_labels(extras),
    )
    _check_labels(trajectory, "atlas.labels")
    return trajectory


def _read_turns(obj: dict[str, Any], layout: _Layout) -> list[Message]:
    if layout.turns not in obj:
        raise _Bad(layout.turns, "missing")
    turns = obj[layout.turns]
    if not isinstance(turns, list):
        raise _Bad(layout.turns, f"must be an array, got {_kind(turns)}")
    if not turns:
        raise _Bad(layout.turns, "must hold at least one turn")
    messages = []
    for i, turn in enumerate(turns):
        at = f"{layout.turns}[{i}]"
        if not isinstance(turn, dict):
            raise _Bad(at, f"must be an object, got {_kind(turn)}")
        speaker = turn.get(layout.speaker)
        role = layout.speakers.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise _Bad(f"{at}.{layout.speaker}", _unknown_speaker(turn, layout))
        text = turn.get(layout.text)
        if not isinstance(text, str):
            problem = "missing" if layout.text not in turn else f"must be a string, got {_kind(text)}"
            raise _Bad(f"{at}.{layout.text}", problem)
        if layout.foreign_mask and layout.foreign_mask[0] in turn:
            key, sibling = layout.foreign_mask
            raise _Bad(f"{at}.{key}", f"is the {sibling} format's mask; read this file as {sibling}")
        train = None
        if layout.mask is not None and layout.mask in turn:
            train = _read_mask(layout.mask, turn[layout.mask], role, f"{at}.{layout.mask}")
        messages.append(Message(role, text, train))
    return messages


def _unknown_speaker(turn: dict[str, Any], layout: _Layout) -> str:
    if layout.speaker not in turn:
        return "missing"
    message = f"must be one of {', '.join(layout.speakers)}, got {_show(turn[layout.speaker])}"
    if turn[layout.speaker] == "tool" and layout.mask == "loss":
        message += " (AgentGym has no tool turns; read this file as sharegpt)"
    return message


def _read_mask(key: str, value: object, role: Role, at: str) -> bool | None:
    if key == "weight":
        if role is not Role.ASSISTANT:
            raise _Bad(at, f"only assistant messages may carry a weight, this is a {role.value} message")
        if type(value) is not int or value not in (0, 1):
            raise _Bad(at, f"must be 0 or 1, got {_show(value)}")
        return value == 1
    if value is not None and not isinstance(value, bool):
        raise _Bad(at, f"must be true, false or null, got {_show(value)}")
    if value is True and role is not Role.ASSISTANT:
        raise _Bad(at, f"only assistant turns may carry loss, this is a {role.value} turn")
    return value


def _read_id(obj: dict[str, Any], layout: _Layout, extras: dict[str, Any]) -> str:
    candidates = [(obj, key, key) for key in layout.id_keys] + [(extras, "id", "atlas.id")]
    for holder, key, at in candidates:
        if key in holder:
            value = holder[key]
            if not isinstance(value, str) or not value:
                raise _Bad(at, f"must be a non-empty string, got {_show(value)}")
            return value
    return ""


def _optional_str(extras: dict[str, Any], key: str) -> str:
    value = extras.get(key, "")
    if not isinstance(value, str):
        raise _Bad(f"atlas.{key}", f"must be a string, got {_kind(value)}")
    return value


def _read_metadata(extras: dict[str, Any]) -> dict[str, str]:
    metadata = extras.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _Bad("atlas.metadata", f"must be an object, got {_kind(metadata)}")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise _Bad(f"atlas.metadata.{key}", f"must be a string, got {_kind(value)}")
    return dict(metadata)


def _read_labels(extras: dict[str, Any]) -> list[StepLabel]:
    raw = extras.get("labels", [])
    if not isinstance(raw, list):
        raise _Bad("atlas.labels", f"must be an array, got {_kind(raw)}")
    labels = []
    for j, item in enumerate(raw):
        at = f"atlas.labels[{j}]"
        if not isinstance(item, dict):
            raise _Bad(at, f"must be an object, got {_kind(item)}")
        for key in item:
            if key not in _LABEL_KEYS:
                raise _Bad(f"{at}.{key}", f"unknown key; a label holds {', '.join(_LABEL_KEYS)}")
        step = item.get("step_index")
        if type(step) is not int:
            problem = "missing" if step is None else f"must be an integer, got {_show(step)}"
            raise _Bad(f"{at}.step_index", problem)
        criteria = item.get("criteria")
        if not isinstance(criteria, list):
            problem = "missing" if criteria is None else f"must be an array, got {_kind(criteria)}"
            raise _Bad(f"{at}.criteria", problem)
        for k, name in enumerate(criteria):
            if not isinstance(name, str) or name not in _CRITERIA:
                problem = f"unknown criterion {_show(name)}; expected one of {', '.join(_CRITERIA)}"
                raise _Bad(f"{at}.criteria[{k}]", problem)
        rationale = item.get("rationale", "")
        if not isinstance(rationale, str):
            raise _Bad(f"{at}.rationale", f"must be a string, got {_kind(rationale)}")
        labels.append(StepLabel(step, tuple(_CRITERIA[name] for name in criteria), rationale))
    return labels


def _restore_tool_turns(raw: object, messages: list[Message]) -> None:
    if not isinstance(raw, list):
        raise _Bad("atlas.tool_turns", f"must be an array, got {_kind(raw)}")
    for k, position in enumerate(raw):
        at = f"atlas.tool_turns[{k}]"
        if type(position) is not int or not 0 <= position < len(messages):
            raise _Bad(at, f"must be the position of a human turn, got {_show(position)}")
        message = messages[position]
        if message.role is not Role.USER:
            raise _Bad(at, f"turn {position} is not a human turn (its role is {message.role.value})")
        message.role = Role.TOOL


def check_labels(trajectory: Trajectory, *, field_path: str = "labels") -> None:
    """Raise InvalidArgument unless every label names a distinct assistant turn that may carry loss.

    One rule set for files and RPCs: a labelled step must exist, be labelled once, have at least one
    criterion, and must not be a turn whose train flag says ``False`` (an unstated flag is fine, since
    ShareGPT cannot state one).
    """
    try:
        _check_labels(trajectory, field_path)
    except _Bad as bad:
        raise InvalidArgument(bad.message, field_path=bad.field) from None


def _check_labels(trajectory: Trajectory, prefix: str) -> None:
    if not trajectory.labels:
        return
    steps = [m for m in trajectory.messages if m.role is Role.ASSISTANT]
    seen: set[int] = set()
    for j, label in enumerate(trajectory.labels):
        at = f"{prefix}[{j}]"
        step = label.step_index
        if not 0 <= step < len(steps):
            raise _Bad(f"{at}.step_index", f"step {step} is outside the {len(steps)} assistant turns")
        if step in seen:
            raise _Bad(f"{at}.step_index", f"step {step} is labelled twice")
        seen.add(step)
        if steps[step].train is False:
            raise _Bad(f"{at}.step_index", f"step {step} is labelled critical but its turn has train=false")
        if not label.criteria:
            raise _Bad(f"{at}.criteria", "a critical step needs at least one criterion")


# --------------------------------------------------------------------------------------------- write


def encode(trajectory: Trajectory, fmt: str) -> dict[str, Any]:
    """A Trajectory as one JSON-ready record of ``fmt`` (see the module docstring for what is lost)."""
    _check_format(fmt)
    messages = trajectory.messages
    record: dict[str, Any]
    if fmt == "openai":
        return {"messages": [_openai_message(m) for m in messages]}
    if fmt == "axolotl":
        turns: list[dict[str, Any]] = [{"role": m.role.value, "content": m.content} for m in messages]
        for turn, m in zip(turns, messages, strict=True):
            if m.train is not None:
                turn["train"] = m.train
        record = {"messages": turns}
    elif fmt == "agentgym":
        record = {"item_id": trajectory.id} if trajectory.id else {}
        record["conversations"] = [
            {"from": _AGENTGYM_NAMES[m.role], "loss": m.train, "value": m.content} for m in messages
        ]
    else:
        record = {"id": trajectory.id} if trajectory.id else {}
        record["conversations"] = [{"from": _SPEAKER_NAMES[m.role], "value": m.content} for m in messages]
    extras = _encode_extras(trajectory, fmt)
    if extras:
        record["atlas"] = extras
    return record


def _openai_message(message: Message) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.role is Role.ASSISTANT and message.train is not None:
        turn["weight"] = int(message.train)
    return turn


def _encode_extras(trajectory: Trajectory, fmt: str) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if fmt == "axolotl" and trajectory.id:
        extras["id"] = trajectory.id
    if trajectory.source_env:
        extras["source_env"] = trajectory.source_env
    if trajectory.task:
        extras["task"] = trajectory.task
    if trajectory.metadata:
        extras["metadata"] = dict(trajectory.metadata)
    if trajectory.labels:
        extras["labels"] = [_encode_label(label) for label in trajectory.labels]
    if fmt == "agentgym":
        tool_turns = [i for i, m in enumerate(trajectory.messages) if m.role is Role.TOOL]
        if tool_turns:
            extras["tool_turns"] = tool_turns
    return extras


def _encode_label(label: StepLabel) -> dict[str, Any]:
    encoded: dict[str, Any] = {"step_index": label.step_index, "criteria": [str(c) for c in label.criteria]}
    if label.rationale:
        encoded["rationale"] = label.rationale
    return encoded


def dump_line(trajectory: Trajectory, fmt: str) -> str:
    """One compact JSON Lines line (UTF-8 kept as is), ending in ``"\\n"``."""
    return json.dumps(encode(trajectory, fmt), ensure_ascii=False, separators=(",", ":")) + "\n"


# ----------------------------------------------------------------------------------------- local files


def _open_text(path: Path, mode: Literal["r", "w"]) -> IO[str]:
    """A text stream on ``path``, gzip for ``.gz`` names (mtime 0, so equal data gives equal bytes)."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.GzipFile(path, mode + "b", mtime=0), encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")


def read_file(
    path: str | Path,
    fmt: str = "auto",
    *,
    errors: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
) -> Iterator[Trajectory]:
    """Stream Trajectories from a local ``.jsonl`` or ``.jsonl.gz`` file (see :func:`decode_lines`)."""
    _check_format(fmt, allow_auto=True)
    path = Path(path)

    def stream() -> Iterator[Trajectory]:
        with _open_text(path, "r") as lines:
            yield from decode_lines(lines, source=str(path), fmt=fmt, errors=errors, report=report)

    return stream()


def write_file(path: str | Path, trajectories: Iterable[Trajectory], fmt: str) -> int:
    """Write Trajectories as ``fmt`` JSON Lines (gzip for ``.gz`` names); returns how many were written."""
    _check_format(fmt)
    count = 0
    with _open_text(Path(path), "w") as out:
        for trajectory in trajectories:
            out.write(dump_line(trajectory, fmt))
            count += 1
    return count
