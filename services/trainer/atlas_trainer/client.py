"""Typed client of TrainerService: one method per RPC, deadlines on every call."""

from __future__ import annotations

from collections.abc import Iterator

from atlas.rpc.client import BaseClient
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc


class TrainerClient(BaseClient):
    """``TrainerClient("127.0.0.1:50052")``; retries only Get/List/Cancel, only on UNAVAILABLE."""

    def __init__(self, target: str, **kwargs: float | int) -> None:
        super().__init__(target, **kwargs)  # type: ignore[arg-type]
        self._stub = pb_grpc.TrainerServiceStub(self.channel)

    def create_training_job(
        self, request: pb.CreateTrainingJobRequest, *, timeout: float | None = None
    ) -> pb.CreateTrainingJobResponse:
        return self._unary(self._stub.CreateTrainingJob, request, timeout=timeout, idempotent=False)

    def get_training_job(
        self, request: pb.GetTrainingJobRequest, *, timeout: float | None = None
    ) -> pb.GetTrainingJobResponse:
        return self._unary(self._stub.GetTrainingJob, request, timeout=timeout, idempotent=True)

    def list_training_jobs(
        self, request: pb.ListTrainingJobsRequest, *, timeout: float | None = None
    ) -> pb.ListTrainingJobsResponse:
        return self._unary(self._stub.ListTrainingJobs, request, timeout=timeout, idempotent=True)

    def watch_training_job(
        self, request: pb.WatchTrainingJobRequest, *, timeout: float | None = None
    ) -> Iterator[pb.WatchTrainingJobResponse]:
        """Progress events until the job ends; ``timeout`` (None = none) bounds the whole watch."""
        return self._stream(self._stub.WatchTrainingJob, request, timeout=timeout)

    def cancel_training_job(
        self, request: pb.CancelTrainingJobRequest, *, timeout: float | None = None
    ) -> pb.CancelTrainingJobResponse:
        return self._unary(self._stub.CancelTrainingJob, request, timeout=timeout, idempotent=True)

    def validate_dataset(
        self, request: pb.ValidateDatasetRequest, *, timeout: float | None = None
    ) -> pb.ValidateDatasetResponse:
        return self._unary(self._stub.ValidateDataset, request, timeout=timeout, idempotent=True)
