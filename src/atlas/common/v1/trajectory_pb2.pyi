from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_SYSTEM: _ClassVar[Role]
    ROLE_USER: _ClassVar[Role]
    ROLE_ASSISTANT: _ClassVar[Role]
    ROLE_TOOL: _ClassVar[Role]

class Criterion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CRITERION_UNSPECIFIED: _ClassVar[Criterion]
    CRITERION_PLAN_CREATION: _ClassVar[Criterion]
    CRITERION_CRITICAL_OBSERVATION: _ClassVar[Criterion]
    CRITERION_CRITICAL_ACTION: _ClassVar[Criterion]
    CRITERION_SELF_CORRECTION: _ClassVar[Criterion]
ROLE_UNSPECIFIED: Role
ROLE_SYSTEM: Role
ROLE_USER: Role
ROLE_ASSISTANT: Role
ROLE_TOOL: Role
CRITERION_UNSPECIFIED: Criterion
CRITERION_PLAN_CREATION: Criterion
CRITERION_CRITICAL_OBSERVATION: Criterion
CRITERION_CRITICAL_ACTION: Criterion
CRITERION_SELF_CORRECTION: Criterion

class Message(_message.Message):
    __slots__ = ("role", "content", "train")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    role: Role
    content: str
    train: bool
    def __init__(self, role: _Optional[_Union[Role, str]] = ..., content: _Optional[str] = ..., train: _Optional[bool] = ...) -> None: ...

class Trajectory(_message.Message):
    __slots__ = ("id", "source_env", "task", "messages", "metadata", "labels")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ENV_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    source_env: str
    task: str
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    metadata: _containers.ScalarMap[str, str]
    labels: _containers.RepeatedCompositeFieldContainer[StepLabel]
    def __init__(self, id: _Optional[str] = ..., source_env: _Optional[str] = ..., task: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Iterable[_Union[StepLabel, _Mapping]]] = ...) -> None: ...

class TrajectoryColumns(_message.Message):
    __slots__ = ("ids", "message_counts", "roles", "contents", "train", "tasks", "source_envs")
    IDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ENVS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    message_counts: _containers.RepeatedScalarFieldContainer[int]
    roles: bytes
    contents: _containers.RepeatedScalarFieldContainer[str]
    train: bytes
    tasks: _containers.RepeatedScalarFieldContainer[str]
    source_envs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., message_counts: _Optional[_Iterable[int]] = ..., roles: _Optional[bytes] = ..., contents: _Optional[_Iterable[str]] = ..., train: _Optional[bytes] = ..., tasks: _Optional[_Iterable[str]] = ..., source_envs: _Optional[_Iterable[str]] = ...) -> None: ...

class StepLabel(_message.Message):
    __slots__ = ("step_index", "criteria", "rationale")
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    CRITERIA_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    step_index: int
    criteria: _containers.RepeatedScalarFieldContainer[Criterion]
    rationale: str
    def __init__(self, step_index: _Optional[int] = ..., criteria: _Optional[_Iterable[_Union[Criterion, str]]] = ..., rationale: _Optional[str] = ...) -> None: ...
