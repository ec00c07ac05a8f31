"""EvaluatorService servicer: proto in, core call, proto out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from atlas.evaluator.v1 import evaluator_service_pb2 as pb
from atlas.evaluator.v1 import evaluator_service_pb2_grpc as pb_grpc
from atlas.protoconv import job_state_from_proto
from atlas_evaluator.convert import environment_to_proto, job_to_proto, spec_from_proto
from atlas_evaluator.core import EvaluatorCore, list_environments


class EvaluatorServicer(pb_grpc.EvaluatorServiceServicer):
    def __init__(self, core: EvaluatorCore) -> None:
        self.core = core

    def ListEnvironments(
        self, request: pb.ListEnvironmentsRequest, context: grpc.ServicerContext
    ) -> pb.ListEnvironmentsResponse:
        envs, token = list_environments(request.page_size, request.page_token)
        return pb.ListEnvironmentsResponse(
            environments=[environment_to_proto(e) for e in envs], next_page_token=token
        )

    def CreateEvaluationJob(
        self, request: pb.CreateEvaluationJobRequest, context: grpc.ServicerContext
    ) -> pb.CreateEvaluationJobResponse:
        return pb.CreateEvaluationJobResponse(job=job_to_proto(self.core.create(spec_from_proto(request))))

    def GetEvaluationJob(
        self, request: pb.GetEvaluationJobRequest, context: grpc.ServicerContext
    ) -> pb.GetEvaluationJobResponse:
        return pb.GetEvaluationJobResponse(job=job_to_proto(self.core.get(request.id)))

    def ListEvaluationJobs(
        self, request: pb.ListEvaluationJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListEvaluationJobsResponse:
        state = job_state_from_proto(request.state)
        jobs, token = self.core.list_jobs(request.page_size, request.page_token, state)
        return pb.ListEvaluationJobsResponse(jobs=[job_to_proto(j) for j in jobs], next_page_token=token)

    def WatchEvaluationJob(
        self, request: pb.WatchEvaluationJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchEvaluationJobResponse]:
        for job in self.core.watch(request.id):
            if not context.is_active():
                return
            yield pb.WatchEvaluationJobResponse(job=job_to_proto(job))

    def CancelEvaluationJob(
        self, request: pb.CancelEvaluationJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelEvaluationJobResponse:
        return pb.CancelEvaluationJobResponse(job=job_to_proto(self.core.cancel(request.id)))
