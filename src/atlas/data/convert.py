"""`atlas convert`: stream a trajectory dataset from one format into another.

Records stream through one at a time, so datasets larger than memory convert fine.
An OUT ending in .jsonl / .jsonl.gz becomes one file; any other OUT is published as a
dataset directory (parts, then manifest.json last) so readers never see half of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from tqdm import tqdm

from atlas import storage
from atlas.data.formats import ReadReport
from atlas.data.model import Trajectory
from atlas.errors import InvalidArgument


def is_single_file(uri: str) -> bool:
    return uri.endswith((".jsonl", ".jsonl.gz"))


@dataclass
class ConvertSummary:
    input: str
    output: str
    target_format: str
    written: int = 0
    report: ReadReport = field(default_factory=ReadReport)
    dropped_masks: bool = False

    def describe(self) -> str:
        lines = [
            f"converted {self.written} trajectories from {self.input} to {self.output} ({self.target_format})"
        ]
        if self.report.records_bad:
            lines.append(f"skipped {self.report.records_bad} bad records; first: {self.report.errors[0]}")
        if self.dropped_masks:
            lines.append(f"note: {self.target_format} cannot hold train/loss flags; the masks were dropped")
        return "\n".join(lines)


def _tracked(
    trajectories: Iterator[Trajectory], summary: ConvertSummary, progress: bool
) -> Iterator[Trajectory]:
    for trajectory in tqdm(trajectories, desc="convert", unit=" traj", disable=not progress, mininterval=0.5):
        if summary.target_format == "sharegpt" and trajectory.has_mask():
            summary.dropped_masks = True
        summary.written += 1
        yield trajectory


def convert(
    source: str,
    target: str,
    *,
    source_format: str = "auto",
    target_format: str,
    skip_bad: bool = False,
    tokenizer: str | None = None,
    mask: str = "dataset",
    max_length: int | None = None,
    progress: bool = True,
) -> ConvertSummary:
    """Convert ``source`` to ``target``; returns counts (raises RecordError on a bad line unless skip_bad)."""
    summary = ConvertSummary(source, target, target_format)
    trajectories = storage.read_trajectories(
        source, source_format, errors="skip" if skip_bad else "raise", report=summary.report
    )
    stream = _tracked(trajectories, summary, progress)
    if target_format == "trl":
        _write_tokenized(stream, target, tokenizer, mask, max_length)
    elif is_single_file(target):
        from atlas.data.formats import dump_line

        with storage.open_text(target, "w") as out:
            for trajectory in stream:
                out.write(dump_line(trajectory, target_format))
    else:
        storage.write_trajectories(target, stream, target_format)
    return summary


def _write_tokenized(
    stream: Iterator[Trajectory], target: str, tokenizer_name: str | None, mask: str, max_length: int | None
) -> None:
    if not tokenizer_name:
        raise InvalidArgument(
            "--to trl needs --tokenizer (a tokenizer directory or hub id)", field_path="tokenizer"
        )
    if not is_single_file(target):
        raise InvalidArgument(
            "--to trl writes one file: OUT must end in .jsonl or .jsonl.gz", field_path="output"
        )
    from transformers import AutoTokenizer

    from atlas.data.tokenized import to_trl_record, tokenize_trajectory

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    with storage.open_text(target, "w") as out:
        for trajectory in stream:
            sample = tokenize_trajectory(trajectory, tokenizer, mask=mask, max_length=max_length)  # type: ignore[arg-type]
            out.write(json.dumps(to_trl_record(sample)) + "\n")
