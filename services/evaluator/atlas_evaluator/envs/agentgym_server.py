"""Any built-in env over AgentGym's env-server HTTP protocol (``atlas env-server``).

Endpoints, as AgentGym's servers speak them (JSON bodies, JSON answers):

- ``POST /create`` ``{}`` -> ``{"id": int}``
- ``POST /reset`` ``{"id", "data_idx"}`` -> ``{"observation", "reward", "score", "done", ...}``
- ``POST /step`` ``{"id", "action"}`` -> ``{"observation", "reward", "score", "done", ...}``
- ``GET /observation?id=`` -> ``{"observation", "reward", "score", "done"}``
- ``GET /available_actions?id=`` -> ``{"available_actions": [...]}``
- ``POST /close`` ``{"id"}`` -> ``true`` / ``false``

Answers carry our extras beside AgentGym's keys (``instruction`` on reset, ``info`` with ``valid`` and
``success``), which AgentGym clients ignore. ``data_idx`` picks the task as AgentGym does: for one env
it is the seed; for an aggregate id (``babyai``) member ``data_idx % n`` plays seed ``data_idx // n``.
Each created env is its own object with its own lock (the envs are not thread-safe); the server is a
stdlib ``ThreadingHTTPServer``, so no web framework is needed. Errors answer 4xx with ``{"error"}``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from atlas_evaluator.envs.base import StepResult, TextEnv
from atlas_evaluator.envs.registry import make_env, members

log = logging.getLogger(__name__)


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    env: TextEnv | None = None
    env_id: str = ""
    last: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0


class EnvPool:
    """The envs a server holds, by AgentGym id; the protocol logic without HTTP."""

    def __init__(self, env_id: str) -> None:
        self.members = members(env_id)
        self.env_id = env_id
        self._slots: dict[int, _Slot] = {}
        self._next = 0
        self._lock = threading.Lock()

    def create(self) -> dict[str, Any]:
        with self._lock:
            idx, self._next = self._next, self._next + 1
            self._slots[idx] = _Slot()
        return {"id": idx}

    def _slot(self, body: dict[str, Any]) -> tuple[int, _Slot]:
        try:
            idx = int(body["id"])
        except (KeyError, TypeError, ValueError):
            raise RequestError(400, "field 'id' must be an integer") from None
        slot = self._slots.get(idx)
        if slot is None:
            raise RequestError(404, f"The id {idx} is not valid.")
        return idx, slot

    def reset(self, body: dict[str, Any]) -> dict[str, Any]:
        _, slot = self._slot(body)
        try:
            data_idx = int(body.get("data_idx", 0))
        except (TypeError, ValueError):
            raise RequestError(400, "field 'data_idx' must be an integer") from None
        if data_idx < 0:
            raise RequestError(400, "field 'data_idx' must be >= 0")
        n = len(self.members)
        member, seed = (self.members[0], data_idx) if n == 1 else (self.members[data_idx % n], data_idx // n)
        with slot.lock:
            if slot.env is None or slot.env_id != member:
                if slot.env is not None:
                    slot.env.close()
                slot.env, slot.env_id = make_env(member), member
            result = slot.env.reset(seed=seed)
            slot.score = 0.0
            slot.last = {
                "observation": result.observation,
                "reward": 0.0,
                "score": 0.0,
                "done": False,
                "deleted": False,
                "instruction": result.instruction,
                "task": result.task,
                "env": member,
                "seed": seed,
            }
            return dict(slot.last)

    def step(self, body: dict[str, Any]) -> dict[str, Any]:
        _, slot = self._slot(body)
        action = body.get("action")
        if not isinstance(action, str):
            raise RequestError(400, "field 'action' must be a string")
        with slot.lock:
            if slot.env is None:
                raise RequestError(409, "reset the environment before stepping it")
            result: StepResult = slot.env.step(action)
            slot.score = float(result.info.get("score", slot.score))
            slot.last = {
                "observation": result.observation,
                "reward": result.reward,
                "score": slot.score,
                "done": result.done,
                "info": {k: v for k, v in result.info.items() if isinstance(v, (bool, int, float, str))},
            }
            return dict(slot.last)

    def observation(self, query: dict[str, Any]) -> dict[str, Any]:
        _, slot = self._slot(query)
        with slot.lock:
            if not slot.last:
                raise RequestError(409, "reset the environment first")
            return {k: slot.last[k] for k in ("observation", "reward", "score", "done")}

    def available_actions(self, query: dict[str, Any]) -> dict[str, Any]:
        _, slot = self._slot(query)
        with slot.lock:
            if slot.env is None:
                raise RequestError(409, "reset the environment first")
            return {"available_actions": slot.env.valid_actions()}

    def close(self, body: dict[str, Any]) -> bool:
        try:
            idx, slot = self._slot(body)
        except RequestError as exc:
            if exc.status == 404:
                return False
            raise
        with slot.lock:
            if slot.env is not None:
                slot.env.close()
            del self._slots[idx]
        return True

    def close_all(self) -> None:
        for idx in list(self._slots):
            self.close({"id": idx})


def _handler(pool: EnvPool) -> type[BaseHTTPRequestHandler]:
    posts = {
        "/create": lambda b: pool.create(),
        "/reset": pool.reset,
        "/step": pool.step,
        "/close": pool.close,
    }
    gets = {"/observation": pool.observation, "/available_actions": pool.available_actions}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _answer(self, status: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _run(self, call: Any, arg: dict[str, Any]) -> None:
            try:
                self._answer(200, call(arg))
            except RequestError as exc:
                self._answer(exc.status, {"error": str(exc)})
            except Exception:
                log.exception("env server failed on %s", self.path)
                self._answer(500, {"error": "internal error in the environment"})

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/":
                self._answer(200, f"This is environment {pool.env_id}.")
                return
            call = gets.get(url.path)
            if call is None:
                self._answer(404, {"error": f"no endpoint GET {url.path}"})
                return
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._run(call, query)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            call = posts.get(url.path)
            if call is None:
                self._answer(404, {"error": f"no endpoint POST {url.path}"})
                return
            try:
                body = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                self._answer(400, {"error": f"body is not JSON: {exc}"})
                return
            if not isinstance(body, dict):
                self._answer(400, {"error": "body must be a JSON object"})
                return
            self._run(call, body)

    return Handler


def make_server(env_id: str, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, EnvPool]:
    """A bound (not yet serving) server for ``env_id``; ``port=0`` picks a free port."""
    pool = EnvPool(env_id)
    server = ThreadingHTTPServer((host, port), _handler(pool))
    server.daemon_threads = True
    return server, pool


def serve(env_id: str, host: str, port: int) -> None:
    server, pool = make_server(env_id, host, port)
    print(
        f"serving {env_id} over the AgentGym protocol on http://{host}:{server.server_address[1]}", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        pool.close_all()
