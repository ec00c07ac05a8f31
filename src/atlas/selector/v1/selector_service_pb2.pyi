from atlas.common.v1 import dataset_pb2 as _dataset_pb2
from atlas.common.v1 import job_pb2 as _job_pb2
from atlas.common.v1 import trajectory_pb2 as _trajectory_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SelectionConfig(_message.Message):
    __slots__ = ("backend", "max_ratio", "min_steps", "seed", "model", "complement_of")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MAX_RATIO_FIELD_NUMBER: _ClassVar[int]
    MIN_STEPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COMPLEMENT_OF_FIELD_NUMBER: _ClassVar[int]
    backend: str
    max_ratio: float
    min_steps: int
    seed: int
    model: str
    complement_of: str
    def __init__(self, backend: _Optional[str] = ..., max_ratio: _Optional[float] = ..., min_steps: _Optional[int] = ..., seed: _Optional[int] = ..., model: _Optional[str] = ..., complement_of: _Optional[str] = ...) -> None: ...

class SelectStepsRequest(_message.Message):
    __slots__ = ("trajectories", "config", "labels_only", "columns", "reply_in_columns")
    TRAJECTORIES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LABELS_ONLY_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    REPLY_IN_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    trajectories: _containers.RepeatedCompositeFieldContainer[_trajectory_pb2.Trajectory]
    config: SelectionConfig
    labels_only: bool
    columns: _trajectory_pb2.TrajectoryColumns
    reply_in_columns: bool
    def __init__(self, trajectories: _Optional[_Iterable[_Union[_trajectory_pb2.Trajectory, _Mapping]]] = ..., config: _Optional[_Union[SelectionConfig, _Mapping]] = ..., labels_only: _Optional[bool] = ..., columns: _Optional[_Union[_trajectory_pb2.TrajectoryColumns, _Mapping]] = ..., reply_in_columns: _Optional[bool] = ...) -> None: ...

class SelectionResult(_message.Message):
    __slots__ = ("trajectory_id", "labels", "masked_trajectory", "step_count", "error", "prompt_version")
    TRAJECTORY_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MASKED_TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    STEP_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    trajectory_id: str
    labels: _containers.RepeatedCompositeFieldContainer[_trajectory_pb2.StepLabel]
    masked_trajectory: _trajectory_pb2.Trajectory
    step_count: int
    error: _job_pb2.JobError
    prompt_version: str
    def __init__(self, trajectory_id: _Optional[str] = ..., labels: _Optional[_Iterable[_Union[_trajectory_pb2.StepLabel, _Mapping]]] = ..., masked_trajectory: _Optional[_Union[_trajectory_pb2.Trajectory, _Mapping]] = ..., step_count: _Optional[int] = ..., error: _Optional[_Union[_job_pb2.JobError, _Mapping]] = ..., prompt_version: _Optional[str] = ...) -> None: ...

class SelectionResultColumns(_message.Message):
    __slots__ = ("trajectory_ids", "step_counts", "label_counts", "step_indices", "criteria", "rationales", "prompt_version")
    TRAJECTORY_IDS_FIELD_NUMBER: _ClassVar[int]
    STEP_COUNTS_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    STEP_INDICES_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    RATIONALES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_VERSION_FIELD_NUMBER: _ClassVar[int]
    trajectory_ids: _containers.RepeatedScalarFieldContainer[str]
    step_counts: _containers.RepeatedScalarFieldContainer[int]
    label_counts: _containers.RepeatedScalarFieldContainer[int]
    step_indices: _containers.RepeatedScalarFieldContainer[int]
    criteria: bytes
    rationales: _containers.RepeatedScalarFieldContainer[str]
    prompt_version: str
    def __init__(self, trajectory_ids: _Optional[_Iterable[str]] = ..., step_counts: _Optional[_Iterable[int]] = ..., label_counts: _Optional[_Iterable[int]] = ..., step_indices: _Optional[_Iterable[int]] = ..., criteria: _Optional[bytes] = ..., rationales: _Optional[_Iterable[str]] = ..., prompt_version: _Optional[str] = ...) -> None: ...

class SelectStepsResponse(_message.Message):
    __slots__ = ("results", "result_columns")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SelectionResult]
    result_columns: SelectionResultColumns
    def __init__(self, results: _Optional[_Iterable[_Union[SelectionResult, _Mapping]]] = ..., result_columns: _Optional[_Union[SelectionResultColumns, _Mapping]] = ...) -> None: ...

class StreamSelectStepsRequest(_message.Message):
    __slots__ = ("config", "trajectories", "labels_only", "columns", "reply_in_columns")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_ONLY_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    REPLY_IN_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    config: SelectionConfig
    trajectories: _containers.RepeatedCompositeFieldContainer[_trajectory_pb2.Trajectory]
    labels_only: bool
    columns: _trajectory_pb2.TrajectoryColumns
    reply_in_columns: bool
    def __init__(self, config: _Optional[_Union[SelectionConfig, _Mapping]] = ..., trajectories: _Optional[_Iterable[_Union[_trajectory_pb2.Trajectory, _Mapping]]] = ..., labels_only: _Optional[bool] = ..., columns: _Optional[_Union[_trajectory_pb2.TrajectoryColumns, _Mapping]] = ..., reply_in_columns: _Optional[bool] = ...) -> None: ...

class StreamSelectStepsResponse(_message.Message):
    __slots__ = ("results", "result_columns")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SelectionResult]
    result_columns: SelectionResultColumns
    def __init__(self, results: _Optional[_Iterable[_Union[SelectionResult, _Mapping]]] = ..., result_columns: _Optional[_Union[SelectionResultColumns, _Mapping]] = ...) -> None: ...

class SelectionJob(_message.Message):
    __slots__ = ("id", "status", "input", "output_uri", "output_format", "config", "trajectories_done", "trajectories_total", "trajectories_failed")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORIES_DONE_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORIES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORIES_FAILED_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: _job_pb2.JobStatus
    input: _dataset_pb2.DatasetRef
    output_uri: str
    output_format: _dataset_pb2.DatasetFormat
    config: SelectionConfig
    trajectories_done: int
    trajectories_total: int
    trajectories_failed: int
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[_job_pb2.JobStatus, _Mapping]] = ..., input: _Optional[_Union[_dataset_pb2.DatasetRef, _Mapping]] = ..., output_uri: _Optional[str] = ..., output_format: _Optional[_Union[_dataset_pb2.DatasetFormat, str]] = ..., config: _Optional[_Union[SelectionConfig, _Mapping]] = ..., trajectories_done: _Optional[int] = ..., trajectories_total: _Optional[int] = ..., trajectories_failed: _Optional[int] = ...) -> None: ...

class CreateSelectionJobRequest(_message.Message):
    __slots__ = ("input", "output_uri", "output_format", "config")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    input: _dataset_pb2.DatasetRef
    output_uri: str
    output_format: _dataset_pb2.DatasetFormat
    config: SelectionConfig
    def __init__(self, input: _Optional[_Union[_dataset_pb2.DatasetRef, _Mapping]] = ..., output_uri: _Optional[str] = ..., output_format: _Optional[_Union[_dataset_pb2.DatasetFormat, str]] = ..., config: _Optional[_Union[SelectionConfig, _Mapping]] = ...) -> None: ...

class CreateSelectionJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: SelectionJob
    def __init__(self, job: _Optional[_Union[SelectionJob, _Mapping]] = ...) -> None: ...

class GetSelectionJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetSelectionJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: SelectionJob
    def __init__(self, job: _Optional[_Union[SelectionJob, _Mapping]] = ...) -> None: ...

class ListSelectionJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _job_pb2.JobState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_job_pb2.JobState, str]] = ...) -> None: ...

class ListSelectionJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[SelectionJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[SelectionJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelSelectionJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelSelectionJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: SelectionJob
    def __init__(self, job: _Optional[_Union[SelectionJob, _Mapping]] = ...) -> None: ...
