"""Typed client of EvaluatorService: one method per RPC, deadlines on every call."""

from __future__ import annotations

from collections.abc import Iterator

from atlas.evaluator.v1 import evaluator_service_pb2 as pb
from atlas.evaluator.v1 import evaluator_service_pb2_grpc as pb_grpc
from atlas.rpc.client import BaseClient


class EvaluatorClient(BaseClient):
    """``EvaluatorClient("127.0.0.1:50053")``; retries only List/Get/Cancel, only on UNAVAILABLE."""

    def __init__(self, target: str, **kwargs: float | int) -> None:
        super().__init__(target, **kwargs)  # type: ignore[arg-type]
        self._stub = pb_grpc.EvaluatorServiceStub(self.channel)

    def list_environments(
        self, request: pb.ListEnvironmentsRequest, *, timeout: float | None = None
    ) -> pb.ListEnvironmentsResponse:
        return self._unary(self._stub.ListEnvironments, request, timeout=timeout, idempotent=True)

    def create_evaluation_job(
        self, request: pb.CreateEvaluationJobRequest, *, timeout: float | None = None
    ) -> pb.CreateEvaluationJobResponse:
        return self._unary(self._stub.CreateEvaluationJob, request, timeout=timeout, idempotent=False)

    def get_evaluation_job(
        self, request: pb.GetEvaluationJobRequest, *, timeout: float | None = None
    ) -> pb.GetEvaluationJobResponse:
        return self._unary(self._stub.GetEvaluationJob, request, timeout=timeout, idempotent=True)

    def list_evaluation_jobs(
        self, request: pb.ListEvaluationJobsRequest, *, timeout: float | None = None
    ) -> pb.ListEvaluationJobsResponse:
        return self._unary(self._stub.ListEvaluationJobs, request, timeout=timeout, idempotent=True)

    def watch_evaluation_job(
        self, request: pb.WatchEvaluationJobRequest, *, timeout: float | None = None
    ) -> Iterator[pb.WatchEvaluationJobResponse]:
        """Progress events until the job ends; ``timeout`` (None = none) bounds the whole watch."""
        return self._stream(self._stub.WatchEvaluationJob, request, timeout=timeout)

    def cancel_evaluation_job(
        self, request: pb.CancelEvaluationJobRequest, *, timeout: float | None = None
    ) -> pb.CancelEvaluationJobResponse:
        return self._unary(self._stub.CancelEvaluationJob, request, timeout=timeout, idempotent=True)
