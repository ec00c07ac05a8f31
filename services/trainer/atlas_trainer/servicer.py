"""TrainerService servicer: proto in, core call, proto out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from atlas.errors import InvalidArgument
from atlas.protoconv import dataset_format_from_proto, job_state_from_proto
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_trainer.convert import (
    create_request_from_proto,
    job_to_proto,
    mask_mode_from_proto,
    report_to_proto,
)
from atlas_trainer.core import TrainerCore


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    def __init__(self, core: TrainerCore) -> None:
        self.core = core

    def CreateTrainingJob(
        self, request: pb.CreateTrainingJobRequest, context: grpc.ServicerContext
    ) -> pb.CreateTrainingJobResponse:
        job = self.core.create(create_request_from_proto(request))
        return pb.CreateTrainingJobResponse(job=job_to_proto(job))

    def GetTrainingJob(
        self, request: pb.GetTrainingJobRequest, context: grpc.ServicerContext
    ) -> pb.GetTrainingJobResponse:
        return pb.GetTrainingJobResponse(job=job_to_proto(self.core.get(request.id)))

    def ListTrainingJobs(
        self, request: pb.ListTrainingJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListTrainingJobsResponse:
        state = job_state_from_proto(request.state)
        jobs, token = self.core.list_jobs(request.page_size, request.page_token, state)
        return pb.ListTrainingJobsResponse(jobs=[job_to_proto(j) for j in jobs], next_page_token=token)

    def WatchTrainingJob(
        self, request: pb.WatchTrainingJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchTrainingJobResponse]:
        for job in self.core.watch(request.id):
            if not context.is_active():
                return
            yield pb.WatchTrainingJobResponse(job=job_to_proto(job))

    def CancelTrainingJob(
        self, request: pb.CancelTrainingJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelTrainingJobResponse:
        return pb.CancelTrainingJobResponse(job=job_to_proto(self.core.cancel(request.id)))

    def ValidateDataset(
        self, request: pb.ValidateDatasetRequest, context: grpc.ServicerContext
    ) -> pb.ValidateDatasetResponse:
        if not request.dataset.uri:
            raise InvalidArgument("required: the dataset's URI", field_path="dataset.uri")
        report = self.core.validate(
            request.dataset.uri,
            dataset_format_from_proto(request.dataset.format, "dataset.format") or "auto",
            request.dataset.sha256,
            request.base_model,
            request.max_seq_length,
            mask_mode_from_proto(request.mask_mode),
        )
        return report_to_proto(report)
