"""EvaluatorService servicer: proto in, core call, proto out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from atlas.evaluator.v1 import evaluator_service_pb2 as pb
from atlas.evaluator.v1 import evaluator_service_pb2_grpc as pb_grpc
from atlas_evaluator.config import EvaluatorConfig
from atlas_evaluator.errors import NotBuiltYet


class EvaluatorServicer(pb_grpc.EvaluatorServiceServicer):
    def __init__(self, config: EvaluatorConfig) -> None:
        self.config = config

    def ListEnvironments(
        self, request: pb.ListEnvironmentsRequest, context: grpc.ServicerContext
    ) -> pb.ListEnvironmentsResponse:
        raise NotBuiltYet("ListEnvironments")

    def CreateEvaluationJob(
        self, request: pb.CreateEvaluationJobRequest, context: grpc.ServicerContext
    ) -> pb.CreateEvaluationJobResponse:
        raise NotBuiltYet("CreateEvaluationJob")

    def GetEvaluationJob(
        self, request: pb.GetEvaluationJobRequest, context: grpc.ServicerContext
    ) -> pb.GetEvaluationJobResponse:
        raise NotBuiltYet("GetEvaluationJob")

    def ListEvaluationJobs(
        self, request: pb.ListEvaluationJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListEvaluationJobsResponse:
        raise NotBuiltYet("ListEvaluationJobs")

    def WatchEvaluationJob(
        self, request: pb.WatchEvaluationJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchEvaluationJobResponse]:
        raise NotBuiltYet("WatchEvaluationJob")

    def CancelEvaluationJob(
        self, request: pb.CancelEvaluationJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelEvaluationJobResponse:
        raise NotBuiltYet("CancelEvaluationJob")
