"""SelectorService servicer: proto in, core call, proto out. Nothing else lives here."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from atlas.selector.v1 import selector_service_pb2 as pb
from atlas.selector.v1 import selector_service_pb2_grpc as pb_grpc
from atlas_selector.config import SelectorConfig
from atlas_selector.errors import NotBuiltYet


class SelectorServicer(pb_grpc.SelectorServiceServicer):
    def __init__(self, config: SelectorConfig) -> None:
        self.config = config

    def SelectSteps(
        self, request: pb.SelectStepsRequest, context: grpc.ServicerContext
    ) -> pb.SelectStepsResponse:
        raise NotBuiltYet("SelectSteps")

    def StreamSelectSteps(
        self, request_iterator: Iterator[pb.StreamSelectStepsRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.StreamSelectStepsResponse]:
        raise NotBuiltYet("StreamSelectSteps")

    def CreateSelectionJob(
        self, request: pb.CreateSelectionJobRequest, context: grpc.ServicerContext
    ) -> pb.CreateSelectionJobResponse:
        raise NotBuiltYet("CreateSelectionJob")

    def GetSelectionJob(
        self, request: pb.GetSelectionJobRequest, context: grpc.ServicerContext
    ) -> pb.GetSelectionJobResponse:
        raise NotBuiltYet("GetSelectionJob")

    def ListSelectionJobs(
        self, request: pb.ListSelectionJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListSelectionJobsResponse:
        raise NotBuiltYet("ListSelectionJobs")

    def CancelSelectionJob(
        self, request: pb.CancelSelectionJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelSelectionJobResponse:
        raise NotBuiltYet("CancelSelectionJob")
