"""AgentGym's HTTP protocol: `atlas env-server` (a real server process) and the HTTP client env
produce the same transcript as playing the env directly."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from atlas_evaluator.envs.agentgym_client import AgentGymHTTPEnv
from atlas_evaluator.envs.registry import make_env
from atlas_evaluator.generate import play_episode

from atlas.errors import FailedPrecondition, Unavailable
from tests.procs import free_port, start_process, stop_process, wait_until

ATLAS = str(Path(sys.executable).parent / "atlas")


def _up(url: str) -> bool:
    with urllib.request.urlopen(url + "/", timeout=2) as response:
        return response.status == 200


@pytest.fixture(scope="module")
def babyai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("env-server") / "server.log"
    proc = start_process([ATLAS, "env-server", "--env", "babyai", "--port", str(port)], log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), 30, proc, log, what="atlas env-server")
        yield url
    finally:
        stop_process(proc)


def _post(url: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_transcript_equals_direct(babyai_server: str) -> None:
    # data_idx 14 on the `babyai` group = member 14 % 6 (Open), seed 14 // 6 = 2.
    direct = make_env("babyai/Open")
    episode = play_episode(direct, 2, recovery_rate=0.3)
    assert episode.success and episode.trajectory is not None
    actions = [m.content.split("Action:\n", 1)[1] for m in episode.trajectory.messages[3::2]]

    fresh = make_env("babyai/Open")
    first = fresh.reset(seed=2)
    expected = [(first.observation, 0.0, False)]
    for action in actions:
        step = fresh.step(action)
        expected.append((step.observation, step.reward, step.done))

    remote = AgentGymHTTPEnv(babyai_server)
    reset = remote.reset(seed=14)
    assert reset.instruction == first.instruction and reset.task == first.task
    got = [(reset.observation, 0.0, False)]
    for action in actions:
        step = remote.step(action)
        got.append((step.observation, step.reward, step.done))
    assert got == expected
    assert got[-1][2] is True
    assert remote.observation() == got[-1][0]
    remote.close()


def test_available_actions_match_the_env(babyai_server: str) -> None:
    remote = AgentGymHTTPEnv(babyai_server)
    remote.reset(seed=0)  # GoToLocal, seed 0
    local = make_env("babyai/GoToLocal")
    local.reset(seed=0)
    assert remote.valid_actions() == local.valid_actions()
    remote.close()


def test_protocol_errors_are_answered_not_crashed(babyai_server: str) -> None:
    assert _post(babyai_server + "/step", {"id": 99999, "action": "turn left"}) == (
        404,
        {"error": "The id 99999 is not valid."},
    )
    status, body = _post(babyai_server + "/reset", {"id": "x"})
    assert status == 400 and "id" in body["error"]  # type: ignore[index]
    request = urllib.request.Request(babyai_server + "/create", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert _post(babyai_server + "/close", {"id": 424242}) == (200, False)
    created = _post(babyai_server + "/create", {})[1]
    assert _post(babyai_server + "/step", {"id": created["id"], "action": "x"})[0] == 409  # type: ignore[index]
    assert _post(babyai_server + "/close", {"id": created["id"]}) == (200, True)  # type: ignore[index]
    # The server still serves after all of that.
    remote = AgentGymHTTPEnv(babyai_server)
    assert remote.reset(seed=1).observation.startswith("Your goal:")
    remote.close()
    with pytest.raises(FailedPrecondition, match="not valid"):
        remote._id = 777777
        remote.step("turn left")


def test_client_reports_an_unreachable_server() -> None:
    with pytest.raises(Unavailable):
        AgentGymHTTPEnv(f"http://127.0.0.1:{free_port()}", timeout=2).reset(seed=0)
