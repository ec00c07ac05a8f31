"""Typed client of SelectorService: one method per RPC, deadlines on every call."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from atlas.rpc.client import BaseClient
from atlas.selector.v1 import selector_service_pb2 as pb
from atlas.selector.v1 import selector_service_pb2_grpc as pb_grpc


class SelectorClient(BaseClient):
    """``SelectorClient("127.0.0.1:50051")``; retries only Get/List/Cancel, only on UNAVAILABLE."""

    def __init__(self, target: str, **kwargs: float | int) -> None:
        super().__init__(target, **kwargs)  # type: ignore[arg-type]
        self._stub = pb_grpc.SelectorServiceStub(self.channel)

    def select_steps(
        self, request: pb.SelectStepsRequest, *, timeout: float | None = None
    ) -> pb.SelectStepsResponse:
        return self._unary(self._stub.SelectSteps, request, timeout=timeout, idempotent=False)

    def stream_select_steps(
        self, requests: Iterable[pb.StreamSelectStepsRequest], *, timeout: float | None = None
    ) -> Iterator[pb.StreamSelectStepsResponse]:
        return self._stream(self._stub.StreamSelectSteps, iter(requests), timeout=timeout)

    def create_selection_job(
        self, request: pb.CreateSelectionJobRequest, *, timeout: float | None = None
    ) -> pb.CreateSelectionJobResponse:
        return self._unary(self._stub.CreateSelectionJob, request, timeout=timeout, idempotent=False)

    def get_selection_job(
        self, request: pb.GetSelectionJobRequest, *, timeout: float | None = None
    ) -> pb.GetSelectionJobResponse:
        return self._unary(self._stub.GetSelectionJob, request, timeout=timeout, idempotent=True)

    def list_selection_jobs(
        self, request: pb.ListSelectionJobsRequest, *, timeout: float | None = None
    ) -> pb.ListSelectionJobsResponse:
        return self._unary(self._stub.ListSelectionJobs, request, timeout=timeout, idempotent=True)

    def cancel_selection_job(
        self, request: pb.CancelSelectionJobRequest, *, timeout: float | None = None
    ) -> pb.CancelSelectionJobResponse:
        return self._unary(self._stub.CancelSelectionJob, request, timeout=timeout, idempotent=True)
