"""The selector core without a server: the contract and its repair rule, the backends, the dev-set F1."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
from atlas_selector.backends import make_backend
from atlas_selector.contract import ContractViolation, ProposedLabel, enforce, label_cap
from atlas_selector.evaluate import agreement
from atlas_selector.pipeline import BoundedPipeline
from atlas_selector.rules import score_steps
from atlas_selector.selector import Limits, SelectionOptions, Selector
from atlas_selector.steps import split_turn
from procs import wait_until

from atlas.data.formats import read_file
from atlas.data.model import Criterion, Message, Role, StepLabel, Trajectory
from atlas.errors import FailedPrecondition, InvalidArgument

DEV = Path(__file__).parent / "data" / "selector_dev" / "dev.jsonl"
ENVS = ("babyai", "textcraft", "alfworld", "sciworld", "webshop")


def dev_set() -> list[Trajectory]:
    return list(read_file(DEV, "agentgym"))


def trajectory(steps: list[tuple[str, str]], tid: str = "t") -> Trajectory:
    messages = [Message(Role.USER, "Your task is to put a clean mug on the table.")]
    for turn, observation in steps:
        messages += [Message(Role.ASSISTANT, turn), Message(Role.USER, observation)]
    return Trajectory(tid, messages[:-1])


@pytest.mark.parametrize(
    ("steps", "ratio", "minimum", "cap"),
    [(10, 0.3, 1, 3), (3, 0.3, 1, 1), (2, 0.3, 0, 0), (100, 0.29, 1, 29), (7, 1.0, 1, 7), (0, 0.3, 1, 0)],
)
def test_label_cap_is_floor_of_ratio_times_steps_raised_to_the_minimum(
    steps: int, ratio: float, minimum: int, cap: int
) -> None:
    assert label_cap(steps, ratio, minimum) == cap


def test_repair_rule_drops_bad_indices_and_criteria_merges_duplicates_and_truncates_in_given_order() -> None:
    proposals = [
        ProposedLabel(7, ("CRITICAL_ACTION",)),
        ProposedLabel(99, ("PLAN_CREATION",)),  # out of range
        ProposedLabel("2", ("PLAN_CREATION",)),  # not an integer
        ProposedLabel(3, ("MADE_UP",)),  # no known criterion left
        ProposedLabel(7, ("SELF_CORRECTION", "CRITICAL_ACTION")),  # duplicate: merged
        ProposedLabel(1, ("PLAN_CREATION", "BOGUS")),
        ProposedLabel(5, ("CRITICAL_OBSERVATION",)),
        ProposedLabel(6, ("CRITICAL_ACTION",)),  # beyond the cap of 3
    ]
    enforced = enforce(proposals, step_count=10, max_ratio=0.3, min_steps=1)
    assert [(label.step_index, label.criteria) for label in enforced.labels] == [
        (1, (Criterion.PLAN_CREATION,)),
        (5, (Criterion.CRITICAL_OBSERVATION,)),
        (7, (Criterion.CRITICAL_ACTION, Criterion.SELF_CORRECTION)),
    ]
    assert len(enforced.repairs) == 7  # 2 bad indices, unknown criterion + empty label, merge, BOGUS, cap


def test_an_unrepairable_answer_fails_instead_of_inventing_labels() -> None:
    with pytest.raises(ContractViolation, match="0 valid label"):
        enforce([ProposedLabel(-1, ("PLAN_CREATION",))], step_count=4, max_ratio=0.3, min_steps=1)


def test_split_turn_reads_thought_and_action() -> None:
    assert split_turn("Thought: go left first.\n\nAction: turn left\n") == ("go left first.", "turn left")
    assert split_turn("OK") == ("", "OK")
    assert split_turn("Thought: hmm Action: a\nAction:\nclick[Buy Now]") == (
        "hmm Action: a",
        "click[Buy Now]",
    )


def test_rules_signals_plan_correction_and_completion() -> None:
    t = trajectory(
        [
            (
                "Thought: First I need to find a mug, then clean it, then put it on the table.\n"
                "Action: go to cabinet 1",
                "On the cabinet 1, you see a mug 2 and a red vase 4.",
            ),
            ("Thought: There is mug 2.\nAction: take mug 2 from cabinet 1", "You pick up the mug 2."),
            ("Thought: Go clean it.\nAction: clean mug 2 with table 1", "Nothing happens."),
            (
                "Thought: That was wrong, I need the sinkbasin instead.\n"
                "Action: clean mug 2 with sinkbasin 1",
                "You clean the mug 2 using the sinkbasin 1.",
            ),
            ("Thought: Now the table.\nAction: go to table 1", "On the table 1, you see nothing."),
            ("Thought: Put it.\nAction: put mug 2 in/on table 1", "You put the mug 2 in/on the table 1."),
        ]
    )
    scores = {s.index: s for s in score_steps(t)}
    assert Criterion.PLAN_CREATION in scores[0].parts
    assert Criterion.SELF_CORRECTION in scores[3].parts
    assert scores[2].score < 0  # the failed action
    assert scores[5].parts[Criterion.CRITICAL_ACTION] > scores[1].parts[Criterion.CRITICAL_ACTION]
    labels = make_backend("rules").propose(t, 3, 0)
    assert {label.step_index for label in labels} == {0, 3, 5}


def test_random_backend_is_reproducible_and_depends_on_the_seed() -> None:
    trajectories = dev_set()
    selector = Selector()

    def picks(seed: int) -> list[list[int]]:
        resolved = selector.resolve(SelectionOptions("random", seed=seed))
        return [[label.step_index for label in o.labels] for o in selector.select(trajectories, resolved)]

    assert picks(1) == picks(1)
    assert picks(1) != picks(2)


def test_all_and_none_critical_backends() -> None:
    selector = Selector()
    trajectories = dev_set()
    everything = selector.select(trajectories, selector.resolve(SelectionOptions("all")))
    assert all(len(o.labels) == o.step_count for o in everything)
    with pytest.raises(InvalidArgument) as bad:
        selector.resolve(SelectionOptions("all", max_ratio=0.3))
    assert bad.value.field_path == "config.max_ratio"
    rules = selector.select(trajectories, selector.resolve(SelectionOptions("rules")))
    complement = selector.select(trajectories, selector.resolve(SelectionOptions("none_critical")))
    for critical, other in zip(rules, complement, strict=True):
        chosen = {label.step_index for label in other.labels}
        assert chosen.isdisjoint(label.step_index for label in critical.labels)
        assert len(chosen) == min(len(critical.labels), other.step_count - len(critical.labels))


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (SelectionOptions(max_ratio=1.5), "config.max_ratio"),
        (SelectionOptions(max_ratio=-0.1), "config.max_ratio"),
        (SelectionOptions(max_ratio=math.nan), "config.max_ratio"),
        (SelectionOptions(backend="gpt5"), "config.backend"),
        (SelectionOptions(backend="none_critical", complement_of="all"), "config.complement_of"),
        (SelectionOptions(min_steps=-1), "config.min_steps"),
    ],
)
def test_bad_options_are_invalid_argument_naming_the_field(options: SelectionOptions, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        Selector().resolve(options)
    assert error.value.field_path == field


def test_bad_trajectories_fail_alone_with_a_reason() -> None:
    selector = Selector(Limits(max_batch=10, max_message_chars=1000))
    good = dev_set()[0]
    batch = [
        good,
        Trajectory("empty", []),
        Trajectory("no-steps", [Message(Role.USER, "hello")]),
        Trajectory("huge", [Message(Role.USER, "x" * 1001), Message(Role.ASSISTANT, "Action: look")]),
    ]
    outcomes = selector.select(batch, selector.resolve(SelectionOptions()))
    assert outcomes[0].error is None and outcomes[0].labels
    assert [str(o.error) for o in outcomes[1:]] == [
        "trajectories[1].messages: the trajectory has no messages",
        "trajectories[2].messages: the trajectory has no assistant turn, so no step to select",
        "trajectories[3].messages[0].content: message of 1001 characters; at most 1000",
    ]
    with pytest.raises(InvalidArgument, match="at most 10"):
        selector.select([good] * 11, selector.resolve(SelectionOptions()))


def test_every_selection_obeys_the_contract_for_every_backend_and_ratio() -> None:
    selector = Selector()
    trajectories = dev_set()
    for backend in ("rules", "random", "none_critical"):
        for ratio in (0.05, 0.3, 0.5, 1.0 if backend != "none_critical" else 0.5):
            for outcome in selector.select(trajectories, selector.resolve(SelectionOptions(backend, ratio))):
                assert outcome.error is None, outcome.error
                indices = [label.step_index for label in outcome.labels]
                assert 1 <= len(indices) <= max(1, math.floor(ratio * outcome.step_count + 1e-9))
                assert indices == sorted(set(indices)) and all(0 <= i < outcome.step_count for i in indices)
                assert outcome.masked is not None
                assert outcome.masked.trained_steps() == indices


def test_dev_set_is_hand_labelled_across_environments_under_the_cap() -> None:
    trajectories = dev_set()
    assert len(trajectories) >= 20
    assert {t.source_env for t in trajectories} >= set(ENVS)
    for t in trajectories:
        assert 1 <= len(t.labels) <= max(1, math.floor(0.3 * t.step_count + 1e-9)), t.id


def test_rules_agree_with_hand_labels_better_than_random() -> None:
    trajectories = dev_set()
    rules = agreement(trajectories, SelectionOptions("rules"))
    randoms = [agreement(trajectories, SelectionOptions("random", seed=s)).f1 for s in range(5)]
    assert rules.f1 >= 0.40, rules.line()
    assert rules.f1 > sum(randoms) / len(randoms)


def test_pipeline_bounds_what_it_reads_ahead_of_a_slow_consumer() -> None:
    pipeline: BoundedPipeline[int, int] = BoundedPipeline(max_in_flight=10, workers=2)
    read = []

    def produce() -> object:
        for k in range(1000):
            read.append(k)
            yield k

    def prepare(item: int) -> tuple[int, object]:
        return 5, lambda: item

    results = pipeline.run(produce(), prepare)  # type: ignore[arg-type]
    first = [next(results) for _ in range(3)]
    time.sleep(0.3)  # a fast producer, a stalled consumer
    assert len(read) <= 3 + 2 + 1  # answered + in flight (10 units / 5) + the one waiting for a permit
    rest = list(results)
    assert sorted(first + rest) == list(range(1000))  # every item, possibly out of order


def test_in_order_pipeline_reads_ahead_boundedly_and_counts_in_flight() -> None:
    in_flight: list[int] = []
    pipeline: BoundedPipeline[int, int] = BoundedPipeline(
        max_in_flight=10, workers=2, on_in_flight=in_flight.append
    )
    read = []
    workers = []

    def produce() -> object:
        for k in range(100):
            read.append(k)
            yield k

    def prepare(item: int) -> tuple[int, object]:
        def work() -> int:
            workers.append(threading.current_thread())
            return item * 10

        return 2, work

    results = pipeline.run_in_order(produce(), prepare)  # type: ignore[arg-type]
    assert [next(results) for _ in range(3)] == [0, 10, 20]
    # A fast producer, a stalled consumer. Three answered; a result waiting and one more waiting to
    # be handed on; a prepared item waiting and one more read, waiting to be handed on: no more.
    wait_until(lambda: len(read) >= 7, timeout=5)
    time.sleep(0.3)
    assert len(read) == 7
    assert list(results) == [10 * k for k in range(3, 100)]
    # Worked in order on one thread of its own, not the consumer's.
    assert len(set(workers)) == 1 and workers[0] is not threading.current_thread()
    running = [sum(in_flight[: k + 1]) for k in range(len(in_flight))]
    assert sum(in_flight) == 0 and 0 < max(running) <= 4 * 2


def test_in_order_pipeline_lets_its_threads_go_when_the_consumer_stops() -> None:
    in_flight: list[int] = []
    pipeline: BoundedPipeline[int, int] = BoundedPipeline(
        max_in_flight=10, workers=1, on_in_flight=in_flight.append
    )
    threads = threading.active_count()
    results = pipeline.run_in_order(iter(range(1000)), lambda item: (1, lambda: item))  # type: ignore[arg-type]
    assert next(results) == 0
    time.sleep(0.1)  # results pile up behind the stalled consumer
    results.close()  # what gRPC does with a cancelled call's response iterator
    wait_until(lambda: threading.active_count() == threads, timeout=5)
    assert sum(in_flight) == 0  # what was worked and never taken is uncounted too


@pytest.mark.parametrize("mode", ["run", "run_in_order"])
def test_pipeline_passes_a_preparation_error_to_the_consumer(mode: str) -> None:
    pipeline: BoundedPipeline[int, int] = BoundedPipeline(max_in_flight=4, workers=1)

    def prepare(item: int) -> tuple[int, object]:
        if item == 3:
            raise InvalidArgument("bad", field_path="config")
        return 1, lambda: item

    results = getattr(pipeline, mode)(iter(range(10)), prepare)
    answered = []
    with pytest.raises(InvalidArgument, match="bad"):
        answered.extend(results)
    # In order: everything before the bad item. Workers: the error may overtake work in progress.
    assert answered == [0, 1, 2] if mode == "run_in_order" else set(answered) <= {0, 1, 2}
    assert threading.active_count() < 50


def test_the_vllm_backend_without_a_judge_server_is_a_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match="--judge-url"):
        Selector().resolve(SelectionOptions("vllm"))


def test_selection_jobs_take_small_steps_with_a_slow_judge_and_big_ones_otherwise() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from atlas_selector.jobs import BATCH, SelectionJobs

    def judge(concurrency: int) -> Any:
        return cast(Any, SimpleNamespace(backend=SimpleNamespace(concurrency=concurrency)))

    assert SelectionJobs._batch_size(Selector().resolve(SelectionOptions("rules"))) == BATCH
    # Four rounds of requests per step, so progress moves (a CPU judge answers a few a second).
    sizes = [SelectionJobs._batch_size(judge(c)) for c in (1, 2, 4, 16, 64)]
    assert sizes == [BATCH, 16, 16, 64, BATCH]


def test_stream_requests_ramp_up_to_the_batch_and_name_the_config_once() -> None:
    from atlas_selector.client import stream_requests
    from atlas_selector.convert import decode_batch

    from atlas.selector.v1 import selector_service_pb2 as pb

    dev = dev_set()
    trajectories = [
        Trajectory(f"{t.id}-{k}", t.messages, t.source_env, t.task) for k in range(5) for t in dev
    ]
    config = pb.SelectionConfig(backend="random", seed=3)
    sent = list(stream_requests(trajectories, config, batch=40, first_batch=8))
    assert [len(chunk) for chunk, _ in sent] == [8, 16, 32, 40, 19]
    assert [request.HasField("config") for _, request in sent] == [True, False, False, False, False]
    assert sent[0][1].config == config and all(request.labels_only for _, request in sent)
    decoded = [t for _, request in sent for t in decode_batch(request.trajectories, request.columns)]
    assert decoded == trajectories  # the columns carry every turn, in order, once
    by_message = list(stream_requests(trajectories[:3], config, columns=False, labels_only=False))
    assert len(by_message) == 1 and not by_message[0][1].labels_only
    assert [t.id for t in by_message[0][1].trajectories] == [t.id for t in trajectories[:3]]
    assert not by_message[0][1].HasField("columns")
    with pytest.raises(ValueError, match="at least 1"):
        next(stream_requests(trajectories, config, batch=0))


def test_decoding_a_batch_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    from atlas_selector.convert import decode_batch

    from atlas.protoconv import trajectories_to_columns

    columns = trajectories_to_columns(dev_set())
    assert gc.isenabled()
    assert len(decode_batch([], columns)) == 23
    assert gc.isenabled()
    del columns.contents[0]  # the columns now disagree: the request as a whole fails
    with pytest.raises(InvalidArgument, match="contents"):
        decode_batch([], columns)
    assert gc.isenabled()
    gc.disable()
    try:
        decode_batch([], trajectories_to_columns(dev_set()))
        assert not gc.isenabled()  # a collector someone turned off stays off
    finally:
        gc.enable()


def test_batch_histogram_exposes_what_a_prometheus_histogram_would() -> None:
    from atlas_selector.metrics import RATIO_BUCKETS, BatchHistogram
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("x_ratio", "Doc.", "backend", RATIO_BUCKETS, ours)
    reference = Histogram("x_ratio", "Doc.", ["backend"], buckets=RATIO_BUCKETS, registry=theirs)
    values = [0.0, 0.05, 0.051, 0.2, 0.3, 0.33, 1.0, 1.5]  # on, between and past the bounds
    batch.observe_many("rules", values[:3])
    batch.observe_many("rules", values[3:])
    batch.observe_many("all", [1.0])
    batch.observe_many("none", [])
    for value in values:
        reference.labels("rules").observe(value)
    reference.labels("all").observe(1.0)

    def samples(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return sorted(line for line in text.splitlines() if "_created" not in line)

    assert samples(ours) == samples(theirs)
    assert 'x_ratio_bucket{backend="rules",le="0.05"} 2.0' in samples(ours)
    with pytest.raises(ValueError, match="NaN"):
        batch.observe_many("rules", [math.nan])


def test_result_columns_round_trip_and_name_a_column_that_disagrees() -> None:
    from atlas_selector.convert import add_result_columns, outcomes_from_response
    from atlas_selector.selector import Outcome

    from atlas.protoconv import criteria_bits, criteria_from_bits
    from atlas.selector.v1 import selector_service_pb2 as pb

    every = tuple(Criterion)
    assert criteria_from_bits(criteria_bits(every)) == every
    assert criteria_bits(["SELF_CORRECTION", Criterion.PLAN_CREATION]) == 0b1001
    for bad in (0, 16):
        with pytest.raises(InvalidArgument, match=f"got {bad}"):
            criteria_from_bits(bad)
    error = InvalidArgument("no assistant turn", field_path="trajectories[1].messages")
    outcomes = [
        Outcome("a", 4, [StepLabel(0, (Criterion.PLAN_CREATION,), "plan"), StepLabel(3, every, "")]),
        Outcome("b", 0, [], error=error),
        Outcome("c", 2, []),
    ]
    response = pb.StreamSelectStepsResponse()
    add_result_columns(response.result_columns, response.results, outcomes, "v9")
    assert [r.trajectory_id for r in response.results] == ["b"]
    assert response.result_columns.prompt_version == "v9"
    back = {o.trajectory_id: o for o in outcomes_from_response(response)}
    assert [(o.step_count, o.labels) for o in (back["a"], back["c"])] == [(4, outcomes[0].labels), (2, [])]
    assert back["b"].error is not None and back["b"].error.code == "INVALID_ARGUMENT"
    assert back["b"].error.field_path == "trajectories[1].messages"
    response.result_columns.rationales.append("one too many")
    with pytest.raises(InvalidArgument) as bad_column:
        outcomes_from_response(response)
    assert bad_column.value.field_path == "result_columns.rationales"
