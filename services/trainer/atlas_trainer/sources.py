"""Reading a masked dataset and a tokenizer: shared by the service (validation) and the training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atlas.data.model import Trajectory
from atlas.errors import InvalidArgument
from atlas.storage import StorageOptions, dataset_sha256, is_single_file, read_manifest, read_trajectories

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class LoadedDataset:
    uri: str
    sha256: str
    trajectories: list[Trajectory]
    manifest_extra: dict[str, Any] = field(default_factory=dict)
    """The manifest's ``extra`` (selector backend, prompt version...); empty for a single file."""


def load_dataset(
    uri: str, fmt: str = "auto", sha256: str = "", *, options: StorageOptions | None = None
) -> LoadedDataset:
    """All trajectories of a dataset, with its sha256 (checked against ``sha256`` when given)."""
    trajectories = list(read_trajectories(uri, fmt or "auto", expected_sha256=sha256, options=options))
    extra = {} if is_single_file(uri) else read_manifest(uri, options=options).extra
    return LoadedDataset(uri, sha256 or dataset_sha256(uri, options=options), trajectories, extra)


def load_tokenizer(base_model: str) -> PreTrainedTokenizerBase:
    """The base model's tokenizer; it must be fast (masks come from offsets) and have a chat template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    except (OSError, ValueError) as error:
        raise InvalidArgument(
            f"cannot load a tokenizer from {base_model!r}: {error}", field_path="spec.base_model"
        ) from error
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidArgument(
            f"the tokenizer of {base_model!r} has no chat template", field_path="spec.base_model"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
