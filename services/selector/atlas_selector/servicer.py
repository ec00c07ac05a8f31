"""SelectorService servicer: proto in, core call, proto out. Nothing else lives here."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence

import grpc

from atlas.common.v1 import trajectory_pb2
from atlas.errors import InvalidArgument
from atlas.jobs import JobState
from atlas.protoconv import job_state_from_proto
from atlas.selector.v1 import selector_service_pb2 as pb
from atlas.selector.v1 import selector_service_pb2_grpc as pb_grpc
from atlas_selector.convert import (
    add_result_columns,
    add_results,
    decode_batch,
    job_spec_from_proto,
    job_to_proto,
    options_from_proto,
)
from atlas_selector.jobs import SelectionJobs
from atlas_selector.pipeline import BoundedPipeline
from atlas_selector.selector import Resolved, Selector


class SelectorServicer(pb_grpc.SelectorServiceServicer):
    def __init__(
        self,
        selector: Selector,
        jobs: SelectionJobs,
        pipeline: BoundedPipeline[pb.StreamSelectStepsRequest, pb.StreamSelectStepsResponse],
    ) -> None:
        self.selector = selector
        self.jobs = jobs
        self.pipeline = pipeline

    def _select(
        self,
        trajectories: Sequence[trajectory_pb2.Trajectory],
        columns: trajectory_pb2.TrajectoryColumns,
        resolved: Resolved,
        labels_only: bool,
        reply_in_columns: bool,
        response: pb.SelectStepsResponse | pb.StreamSelectStepsResponse,
    ) -> None:
        """Select and put the results in ``response``."""
        self.selector.check_batch(len(trajectories) + len(columns.ids))
        outcomes = self.selector.select(
            decode_batch(trajectories, columns), resolved, labels_only=labels_only
        )
        if reply_in_columns:
            add_result_columns(response.result_columns, response.results, outcomes, resolved.prompt_version)
        else:
            add_results(response.results, outcomes, resolved.prompt_version)

    def SelectSteps(
        self, request: pb.SelectStepsRequest, context: grpc.ServicerContext
    ) -> pb.SelectStepsResponse:
        resolved = self.selector.resolve(options_from_proto(request.config))
        _check_reply_in_columns(request)
        response = pb.SelectStepsResponse()
        self._select(
            request.trajectories,
            request.columns,
            resolved,
            request.labels_only,
            request.reply_in_columns,
            response,
        )
        return response

    def StreamSelectSteps(
        self, request_iterator: Iterator[pb.StreamSelectStepsRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.StreamSelectStepsResponse]:
        state: dict[str, Resolved] = {}
        # A CPU-bound backend (rules...) gains nothing from two workers under the GIL, only thread
        # switches: its batches take turns. A judge (``concurrency`` > 1) waits on I/O, so they overlap.
        cpu_turn = threading.Lock()

        def prepare(
            request: pb.StreamSelectStepsRequest,
        ) -> tuple[int, Callable[[], pb.StreamSelectStepsResponse]]:
            if request.HasField("config"):
                state["resolved"] = self.selector.resolve(options_from_proto(request.config))
            elif "resolved" not in state:
                raise InvalidArgument("the first message of the stream needs a config", field_path="config")
            resolved, labels_only = state["resolved"], request.labels_only
            reply_in_columns = _check_reply_in_columns(request)
            trajectories, columns = list(request.trajectories), request.columns
            units = len(trajectories) + len(columns.ids)
            self.selector.check_batch(units)

            def work() -> pb.StreamSelectStepsResponse:
                overlap = getattr(resolved.backend, "concurrency", 1) > 1
                with contextlib.nullcontext() if overlap else cpu_turn:
                    response = pb.StreamSelectStepsResponse()
                    self._select(trajectories, columns, resolved, labels_only, reply_in_columns, response)
                return response

            return max(1, units), work

        # The first message's backend decides how the stream runs: a judge (requests wait on I/O)
        # through the threaded pipeline, so batches overlap; a CPU-bound backend one batch at a time,
        # in order, with reading the next request and sending the last answer on threads of their own.
        first = next(request_iterator, None)
        if first is None:
            return iter(())
        prepared = prepare(first)

        def prepare_once(
            request: pb.StreamSelectStepsRequest,
        ) -> tuple[int, Callable[[], pb.StreamSelectStepsResponse]]:
            return prepared if request is first else prepare(request)

        items = itertools.chain([first], request_iterator)
        if getattr(state["resolved"].backend, "concurrency", 1) > 1:
            return self.pipeline.run(items, prepare_once)
        return self.pipeline.run_in_order(items, prepare_once)

    def CreateSelectionJob(
        self, request: pb.CreateSelectionJobRequest, context: grpc.ServicerContext
    ) -> pb.CreateSelectionJobResponse:
        job_id = self.jobs.create(job_spec_from_proto(request))
        return pb.CreateSelectionJobResponse(job=job_to_proto(self.jobs.store.get(job_id)))

    def GetSelectionJob(
        self, request: pb.GetSelectionJobRequest, context: grpc.ServicerContext
    ) -> pb.GetSelectionJobResponse:
        return pb.GetSelectionJobResponse(job=job_to_proto(self.jobs.store.get(request.id)))

    def ListSelectionJobs(
        self, request: pb.ListSelectionJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListSelectionJobsResponse:
        state = job_state_from_proto(request.state)
        jobs, token = self.jobs.store.list_jobs(
            page_size=request.page_size,
            page_token=request.page_token,
            state=JobState(state) if state else None,
        )
        return pb.ListSelectionJobsResponse(jobs=[job_to_proto(job) for job in jobs], next_page_token=token)

    def CancelSelectionJob(
        self, request: pb.CancelSelectionJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelSelectionJobResponse:
        job = self.jobs.store.cancel(request.id)
        self.jobs.changed()
        return pb.CancelSelectionJobResponse(job=job_to_proto(job))


def _check_reply_in_columns(request: pb.SelectStepsRequest | pb.StreamSelectStepsRequest) -> bool:
    if request.reply_in_columns and not request.labels_only:
        raise InvalidArgument(
            "needs labels_only: a masked trajectory has no column form", field_path="reply_in_columns"
        )
    return request.reply_in_columns
