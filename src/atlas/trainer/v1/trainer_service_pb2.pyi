from atlas.common.v1 import dataset_pb2 as _dataset_pb2
from atlas.common.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_METHOD_UNSPECIFIED: _ClassVar[TrainingMethod]
    TRAINING_METHOD_LORA: _ClassVar[TrainingMethod]
    TRAINING_METHOD_FULL: _ClassVar[TrainingMethod]

class MaskMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASK_MODE_UNSPECIFIED: _ClassVar[MaskMode]
    MASK_MODE_DATASET: _ClassVar[MaskMode]
    MASK_MODE_ALL_ASSISTANT: _ClassVar[MaskMode]

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_BF16: _ClassVar[Precision]
    PRECISION_FP16: _ClassVar[Precision]

class Runner(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUNNER_UNSPECIFIED: _ClassVar[Runner]
    RUNNER_LOCAL: _ClassVar[Runner]
    RUNNER_KUBERNETES: _ClassVar[Runner]
TRAINING_METHOD_UNSPECIFIED: TrainingMethod
TRAINING_METHOD_LORA: TrainingMethod
TRAINING_METHOD_FULL: TrainingMethod
MASK_MODE_UNSPECIFIED: MaskMode
MASK_MODE_DATASET: MaskMode
MASK_MODE_ALL_ASSISTANT: MaskMode
PRECISION_UNSPECIFIED: Precision
PRECISION_FP32: Precision
PRECISION_BF16: Precision
PRECISION_FP16: Precision
RUNNER_UNSPECIFIED: Runner
RUNNER_LOCAL: Runner
RUNNER_KUBERNETES: Runner

class LoraConfig(_message.Message):
    __slots__ = ("r", "alpha", "dropout", "target_modules")
    R_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    r: int
    alpha: float
    dropout: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, r: _Optional[int] = ..., alpha: _Optional[float] = ..., dropout: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class TrainingSpec(_message.Message):
    __slots__ = ("base_model", "method", "lora", "learning_rate", "lr_scheduler", "warmup_steps", "epochs", "max_steps", "micro_batch_size", "gradient_accumulation_steps", "max_seq_length", "seed", "precision", "mask_mode", "checkpoint_every_steps")
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    LR_SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    WARMUP_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MICRO_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    MASK_MODE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_STEPS_FIELD_NUMBER: _ClassVar[int]
    base_model: str
    method: TrainingMethod
    lora: LoraConfig
    learning_rate: float
    lr_scheduler: str
    warmup_steps: int
    epochs: int
    max_steps: int
    micro_batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    seed: int
    precision: Precision
    mask_mode: MaskMode
    checkpoint_every_steps: int
    def __init__(self, base_model: _Optional[str] = ..., method: _Optional[_Union[TrainingMethod, str]] = ..., lora: _Optional[_Union[LoraConfig, _Mapping]] = ..., learning_rate: _Optional[float] = ..., lr_scheduler: _Optional[str] = ..., warmup_steps: _Optional[int] = ..., epochs: _Optional[int] = ..., max_steps: _Optional[int] = ..., micro_batch_size: _Optional[int] = ..., gradient_accumulation_steps: _Optional[int] = ..., max_seq_length: _Optional[int] = ..., seed: _Optional[int] = ..., precision: _Optional[_Union[Precision, str]] = ..., mask_mode: _Optional[_Union[MaskMode, str]] = ..., checkpoint_every_steps: _Optional[int] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("step", "total_steps", "loss", "learning_rate", "tokens_per_second", "tokens", "supervised_tokens", "eta_seconds")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SUPERVISED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    loss: float
    learning_rate: float
    tokens_per_second: float
    tokens: int
    supervised_tokens: int
    eta_seconds: float
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., tokens: _Optional[int] = ..., supervised_tokens: _Optional[int] = ..., eta_seconds: _Optional[float] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("id", "status", "dataset", "output_uri", "spec", "runner", "progress")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    RUNNER_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: _job_pb2.JobStatus
    dataset: _dataset_pb2.DatasetRef
    output_uri: str
    spec: TrainingSpec
    runner: Runner
    progress: TrainingProgress
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[_job_pb2.JobStatus, _Mapping]] = ..., dataset: _Optional[_Union[_dataset_pb2.DatasetRef, _Mapping]] = ..., output_uri: _Optional[str] = ..., spec: _Optional[_Union[TrainingSpec, _Mapping]] = ..., runner: _Optional[_Union[Runner, str]] = ..., progress: _Optional[_Union[TrainingProgress, _Mapping]] = ...) -> None: ...

class CreateTrainingJobRequest(_message.Message):
    __slots__ = ("dataset", "output_uri", "spec", "runner")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    RUNNER_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.DatasetRef
    output_uri: str
    spec: TrainingSpec
    runner: Runner
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.DatasetRef, _Mapping]] = ..., output_uri: _Optional[str] = ..., spec: _Optional[_Union[TrainingSpec, _Mapping]] = ..., runner: _Optional[_Union[Runner, str]] = ...) -> None: ...

class CreateTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class ListTrainingJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _job_pb2.JobState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_job_pb2.JobState, str]] = ...) -> None: ...

class ListTrainingJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[TrainingJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[TrainingJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchTrainingJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class CancelTrainingJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class ValidateDatasetRequest(_message.Message):
    __slots__ = ("dataset", "base_model", "max_seq_length", "mask_mode")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MASK_MODE_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.DatasetRef
    base_model: str
    max_seq_length: int
    mask_mode: MaskMode
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.DatasetRef, _Mapping]] = ..., base_model: _Optional[str] = ..., max_seq_length: _Optional[int] = ..., mask_mode: _Optional[_Union[MaskMode, str]] = ...) -> None: ...

class MaskedExample(_message.Message):
    __slots__ = ("trajectory_id", "rendered")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    RENDERED_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    rendered: str
    def __init__(self, trajectory_id: _Optional[str] = ..., rendered: _Optional[str] = ...) -> None: ...

class ValidateDatasetResponse(_message.Message):
    __slots__ = ("ok", "problems", "samples", "turns", "tokens", "supervised_tokens", "samples_without_supervised_tokens", "turns_without_supervised_end_of_turn", "samples_over_max_length", "ratio_bucket_bounds", "ratio_bucket_counts", "examples")
    OK_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SUPERVISED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_WITHOUT_SUPERVISED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TURNS_WITHOUT_SUPERVISED_END_OF_TURN_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_OVER_MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    RATIO_BUCKET_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    RATIO_BUCKET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    problems: _containers.RepeatedScalarFieldContainer[str]
    samples: int
    turns: int
    tokens: int
    supervised_tokens: int
    samples_without_supervised_tokens: int
    turns_without_supervised_end_of_turn: int
    samples_over_max_length: int
    ratio_bucket_bounds: _containers.RepeatedScalarFieldContainer[float]
    ratio_bucket_counts: _containers.RepeatedScalarFieldContainer[int]
    examples: _containers.RepeatedCompositeFieldContainer[MaskedExample]
    def __init__(self, ok: _Optional[bool] = ..., problems: _Optional[_Iterable[str]] = ..., samples: _Optional[int] = ..., turns: _Optional[int] = ..., tokens: _Optional[int] = ..., supervised_tokens: _Optional[int] = ..., samples_without_supervised_tokens: _Optional[int] = ..., turns_without_supervised_end_of_turn: _Optional[int] = ..., samples_over_max_length: _Optional[int] = ..., ratio_bucket_bounds: _Optional[_Iterable[float]] = ..., ratio_bucket_counts: _Optional[_Iterable[int]] = ..., examples: _Optional[_Iterable[_Union[MaskedExample, _Mapping]]] = ...) -> None: ...
