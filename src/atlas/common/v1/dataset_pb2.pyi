from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_AGENTGYM: _ClassVar[DatasetFormat]
    DATASET_FORMAT_OPENAI: _ClassVar[DatasetFormat]
    DATASET_FORMAT_AXOLOTL: _ClassVar[DatasetFormat]
    DATASET_FORMAT_SHAREGPT: _ClassVar[DatasetFormat]
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_AGENTGYM: DatasetFormat
DATASET_FORMAT_OPENAI: DatasetFormat
DATASET_FORMAT_AXOLOTL: DatasetFormat
DATASET_FORMAT_SHAREGPT: DatasetFormat

class DatasetRef(_message.Message):
    __slots__ = ("uri", "format", "sha256")
    URI_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    uri: str
    format: DatasetFormat
    sha256: str
    def __init__(self, uri: _Optional[str] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., sha256: _Optional[str] = ...) -> None: ...
