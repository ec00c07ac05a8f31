"""An env that plays a remote AgentGym env server over HTTP (WebShop, ALFWorld, SciWorld, ours...).

It speaks the protocol of AgentGym's servers (``/create``, ``/reset``, ``/step``, ``/observation``,
``/available_actions``, ``/close``; see :mod:`.agentgym_server`) so deployments of AgentGym envs are
evaluated unchanged. AgentGym servers do not send the task prompt (their Python clients hard-code it),
so pass ``instruction``; our own server sends it and it is used when none was given.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from atlas.errors import FailedPrecondition, Unavailable
from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv


class AgentGymHTTPEnv(TextEnv):
    def __init__(
        self, base_url: str, *, env_id: str = "agentgym", instruction: str = "", timeout: float = 60.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.env_id = env_id
        self.instruction = instruction
        self.timeout = timeout
        self._id: int | None = None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise FailedPrecondition(
                f"env server {self.base_url}{path} answered {exc.code}: {detail}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(f"env server {self.base_url} unreachable: {exc}") from exc
        if isinstance(payload, dict) and "error" in payload:
            raise FailedPrecondition(f"env server {self.base_url}{path}: {payload['error']}")
        return payload

    def _env_id(self) -> int:
        if self._id is None:
            self._id = int(self._call("POST", "/create", {})["id"])
        return self._id

    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        payload = self._call("POST", "/reset", {"id": self._env_id(), "data_idx": seed})
        instruction = self.instruction or str(payload.get("instruction", ""))
        info = {k: payload[k] for k in ("env", "seed") if k in payload}
        return ResetResult(instruction, str(payload["observation"]), str(payload.get("task", "")), info)

    def step(self, action: str) -> StepResult:
        payload = self._call("POST", "/step", {"id": self._env_id(), "action": action})
        info: dict[str, Any] = dict(payload.get("info") or {})
        info.setdefault("score", float(payload.get("score", payload.get("reward", 0.0))))
        return StepResult(
            str(payload["observation"]), float(payload.get("reward", 0.0)), bool(payload["done"]), info
        )

    def valid_actions(self) -> list[str] | None:
        try:
            payload = self._call("GET", f"/available_actions?id={self._env_id()}")
        except FailedPrecondition:
            return None  # most AgentGym servers have no such endpoint
        actions = payload.get("available_actions") if isinstance(payload, dict) else None
        return [str(a) for a in actions] if isinstance(actions, list) else None

    def observation(self) -> str:
        payload = self._call("GET", f"/observation?id={self._env_id()}")
        return str(payload["observation"]) if isinstance(payload, dict) else str(payload)

    def close(self) -> None:
        if self._id is not None:
            try:
                self._call("POST", "/close", {"id": self._id})
            finally:
                self._id = None
