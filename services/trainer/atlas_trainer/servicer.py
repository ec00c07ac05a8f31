"""TrainerService servicer: proto in, core call, proto out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_trainer.config import TrainerConfig
from atlas_trainer.errors import NotBuiltYet


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    def __init__(self, config: TrainerConfig) -> None:
        self.config = config

    def CreateTrainingJob(
        self, request: pb.CreateTrainingJobRequest, context: grpc.ServicerContext
    ) -> pb.CreateTrainingJobResponse:
        raise NotBuiltYet("CreateTrainingJob")

    def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: grpc.ServicerContext
    ) -> pb.GetTrainingJobResponse:
        raise NotBuiltYet("GetTrainingJob")

    def ListTrainingJobs(
        self, request: pb.ListTrainingJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListTrainingJobsResponse:
        raise NotBuiltYet("ListTrainingJobs")

    def WatchTrainingJob(
        self, request: pb.WatchTrainingJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchTrainingJobResponse]:
        raise NotBuiltYet("WatchTrainingJob")

    def CancelTrainingJob(
        self, request: pb.CancelTrainingJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelTrainingJobResponse:
        raise NotBuiltYet("CancelTrainingJob")

    def ValidateDataset(
        self, request: pb.ValidateDatasetRequest, context: grpc.ServicerContext
    ) -> pb.ValidateDatasetResponse:
        raise NotBuiltYet("ValidateDataset")
