from atlas.common.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Split(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPLIT_UNSPECIFIED: _ClassVar[Split]
    SPLIT_HELD_IN: _ClassVar[Split]
    SPLIT_HELD_OUT: _ClassVar[Split]

class PolicyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_KIND_UNSPECIFIED: _ClassVar[PolicyKind]
    POLICY_KIND_OPENAI: _ClassVar[PolicyKind]
    POLICY_KIND_TRANSFORMERS: _ClassVar[PolicyKind]
    POLICY_KIND_ORACLE: _ClassVar[PolicyKind]
SPLIT_UNSPECIFIED: Split
SPLIT_HELD_IN: Split
SPLIT_HELD_OUT: Split
POLICY_KIND_UNSPECIFIED: PolicyKind
POLICY_KIND_OPENAI: PolicyKind
POLICY_KIND_TRANSFORMERS: PolicyKind
POLICY_KIND_ORACLE: PolicyKind

class Environment(_message.Message):
    __slots__ = ("id", "split", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    split: Split
    description: str
    def __init__(self, id: _Optional[str] = ..., split: _Optional[_Union[Split, str]] = ..., description: _Optional[str] = ...) -> None: ...

class PolicyConfig(_message.Message):
    __slots__ = ("kind", "base_model", "adapter_uri", "endpoint", "temperature", "max_new_tokens")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_URI_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    kind: PolicyKind
    base_model: str
    adapter_uri: str
    endpoint: str
    temperature: float
    max_new_tokens: int
    def __init__(self, kind: _Optional[_Union[PolicyKind, str]] = ..., base_model: _Optional[str] = ..., adapter_uri: _Optional[str] = ..., endpoint: _Optional[str] = ..., temperature: _Optional[float] = ..., max_new_tokens: _Optional[int] = ...) -> None: ...

class EvaluationSpec(_message.Message):
    __slots__ = ("policy", "env_ids", "episodes_per_env", "seed", "max_turns", "concurrency", "training_job_id")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ENV_IDS_FIELD_NUMBER: _ClassVar[int]
    EPISODES_PER_ENV_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_TURNS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    policy: PolicyConfig
    env_ids: _containers.RepeatedScalarFieldContainer[str]
    episodes_per_env: int
    seed: int
    max_turns: int
    concurrency: int
    training_job_id: str
    def __init__(self, policy: _Optional[_Union[PolicyConfig, _Mapping]] = ..., env_ids: _Optional[_Iterable[str]] = ..., episodes_per_env: _Optional[int] = ..., seed: _Optional[int] = ..., max_turns: _Optional[int] = ..., concurrency: _Optional[int] = ..., training_job_id: _Optional[str] = ...) -> None: ...

class EnvironmentResult(_message.Message):
    __slots__ = ("env_id", "split", "episodes", "successes", "success_rate", "mean_reward", "mean_turns")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    MEAN_TURNS_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    split: Split
    episodes: int
    successes: int
    success_rate: float
    mean_reward: float
    mean_turns: float
    def __init__(self, env_id: _Optional[str] = ..., split: _Optional[_Union[Split, str]] = ..., episodes: _Optional[int] = ..., successes: _Optional[int] = ..., success_rate: _Optional[float] = ..., mean_reward: _Optional[float] = ..., mean_turns: _Optional[float] = ...) -> None: ...

class EvaluationJob(_message.Message):
    __slots__ = ("id", "status", "spec", "output_uri", "episodes_done", "episodes_total", "results")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    EPISODES_DONE_FIELD_NUMBER: _ClassVar[int]
    EPISODES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: _job_pb2.JobStatus
    spec: EvaluationSpec
    output_uri: str
    episodes_done: int
    episodes_total: int
    results: _containers.RepeatedCompositeFieldContainer[EnvironmentResult]
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[_job_pb2.JobStatus, _Mapping]] = ..., spec: _Optional[_Union[EvaluationSpec, _Mapping]] = ..., output_uri: _Optional[str] = ..., episodes_done: _Optional[int] = ..., episodes_total: _Optional[int] = ..., results: _Optional[_Iterable[_Union[EnvironmentResult, _Mapping]]] = ...) -> None: ...

class ListEnvironmentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEnvironmentsResponse(_message.Message):
    __slots__ = ("environments", "next_page_token")
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    environments: _containers.RepeatedCompositeFieldContainer[Environment]
    next_page_token: str
    def __init__(self, environments: _Optional[_Iterable[_Union[Environment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateEvaluationJobRequest(_message.Message):
    __slots__ = ("spec", "output_uri")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_FIELD_NUMBER: _ClassVar[int]
    spec: EvaluationSpec
    output_uri: str
    def __init__(self, spec: _Optional[_Union[EvaluationSpec, _Mapping]] = ..., output_uri: _Optional[str] = ...) -> None: ...

class CreateEvaluationJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: EvaluationJob
    def __init__(self, job: _Optional[_Union[EvaluationJob, _Mapping]] = ...) -> None: ...

class GetEvaluationJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetEvaluationJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: EvaluationJob
    def __init__(self, job: _Optional[_Union[EvaluationJob, _Mapping]] = ...) -> None: ...

class ListEvaluationJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: _job_pb2.JobState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[_job_pb2.JobState, str]] = ...) -> None: ...

class ListEvaluationJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[EvaluationJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[EvaluationJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchEvaluationJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchEvaluationJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: EvaluationJob
    def __init__(self, job: _Optional[_Union[EvaluationJob, _Mapping]] = ...) -> None: ...

class CancelEvaluationJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelEvaluationJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: EvaluationJob
    def __init__(self, job: _Optional[_Union[EvaluationJob, _Mapping]] = ...) -> None: ...
