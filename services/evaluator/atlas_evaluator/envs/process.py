"""An env that lives in a child process: for envs that must not share a process (one JVM each).

ScienceWorld and TextWorld-Express drive a JVM over py4j, one per env object, and are not safe to
step from several threads of one process. The runner steps envs in parallel, so for these families it
builds a :class:`ProcessEnv` instead: the real env is constructed in a child process (``spawn``, so
no threads or sockets of the parent are inherited) and every call (``reset``, ``step``, the expert's
``gold_actions`` / ``look`` ...) goes over a pipe. Each env blocks only its own pipe, so the runner's
thread pool steps N envs in N processes at once.

The proxy is an instance of the real env class (a generated subclass whose public methods forward to
the child), so code that checks ``isinstance(env, ScienceWorldEnv)`` (the experts the oracle replays)
works unchanged. Exceptions raised in the child are raised again in the parent as
:class:`EnvProcessError` (with the child's traceback); a child that dies or stops answering within
``timeout_s`` is an :class:`EnvProcessError` too, which the runner turns into an ``error`` stop of
that episode only.

Which families run this way: ``PROCESS_BACKED`` (family -> env class), until the env registry
carries the flag itself.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import multiprocessing
import traceback
from multiprocessing.connection import Connection
from typing import Any

from atlas_evaluator.envs.base import ResetResult, StepResult, TextEnv

# env family -> "module:Class" of its env (imported in the parent only for the class, never built).
PROCESS_BACKED: dict[str, str] = {
    "sciworld": "atlas_evaluator.envs.sciworld:ScienceWorldEnv",
    "twx": "atlas_evaluator.envs.twx:TextWorldExpressEnv",
}
DEFAULT_TIMEOUT_S = 300.0


class EnvProcessError(RuntimeError):
    """The env in the child raised, died or did not answer in time."""


def _serve(conn: Connection, env_id: str) -> None:
    """The child: build the env from the registry, then answer (method, args) until "close"."""
    from atlas_evaluator.envs.registry import make_env

    try:
        env: Any = make_env(env_id)
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    conn.send(("ready", None, ""))
    try:
        while True:
            try:
                method, args, kwargs = conn.recv()
            except EOFError:  # the parent went away
                return
            if method == "close":
                with contextlib.suppress(Exception):
                    env.close()
                conn.send(("ok", None, ""))
                return
            try:
                if method == "__getattr__":  # an attribute read: ("__getattr__", (name,), {})
                    value = getattr(env, args[0])
                else:
                    value = getattr(env, method)(*args, **kwargs)
                conn.send(("ok", value, ""))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        with contextlib.suppress(Exception):
            env.close()


class ProcessEnv(TextEnv):
    """``ProcessEnv(env_id)``: the registry's env ``env_id``, built and stepped in a child process."""

    def __init__(self, env_id: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.env_id = env_id
        self.timeout_s = timeout_s
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._proc = context.Process(target=_serve, args=(child, env_id), name=f"env-{env_id}", daemon=True)
        self._proc.start()
        child.close()
        self._ready = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's process id (tests check that envs really run in separate processes)."""
        return self._proc.pid

    def _receive(self) -> tuple[str, Any, str]:
        if not self._conn.poll(self.timeout_s):
            self._kill()
            raise EnvProcessError(f"env {self.env_id} did not answer within {self.timeout_s:.0f} s")
        try:
            message: tuple[str, Any, str] = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._kill()
            raise EnvProcessError(
                f"env process of {self.env_id} died (exit code {self._proc.exitcode})"
            ) from exc
        return message

    def _check(self, message: tuple[str, Any, str]) -> Any:
        kind, value, trace = message
        if kind == "error":
            raise EnvProcessError(f"{self.env_id}: {value}\n--- in the env process ---\n{trace}")
        return value

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of the env in the child and return its (pickled) result."""
        if self._closed:
            raise EnvProcessError(f"env {self.env_id} is closed")
        if not self._ready:  # the child's first message says whether the env could be built
            self._check(self._receive())
            self._ready = True
        try:
            self._conn.send((method, args, kwargs))
        except (BrokenPipeError, OSError) as exc:
            self._kill()
            raise EnvProcessError(f"env process of {self.env_id} is gone") from exc
        return self._check(self._receive())

    def reset(self, seed: int = 0, task: str | None = None) -> ResetResult:
        result: ResetResult = self.call("reset", seed=seed, task=task)
        return result

    def step(self, action: str) -> StepResult:
        result: StepResult = self.call("step", action)
        return result

    def valid_actions(self) -> list[str] | None:
        actions: list[str] | None = self.call("valid_actions")
        return actions

    def __getattr__(self, name: str) -> Any:
        """Data attributes of the real env (``task``...), read from the child."""
        if name.startswith("_"):
            raise AttributeError(name)
        return self.call("__getattr__", name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._conn.send(("close", (), {}))
            if self._conn.poll(10):
                self._conn.recv()
        self._proc.join(timeout=10)
        self._kill()
        self._conn.close()

    def _kill(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5)


def _forward(name: str) -> Any:
    def method(self: ProcessEnv, *args: Any, **kwargs: Any) -> Any:
        return self.call(name, *args, **kwargs)

    method.__name__ = name
    return method


@functools.cache
def proxy_class(env_class: type[TextEnv]) -> type[ProcessEnv]:
    """A ``ProcessEnv`` that is also an ``env_class``: every public method of it forwards to the child."""
    own = {"reset", "step", "valid_actions", "close", "call", "pid"}
    methods = {
        name: _forward(name)
        for name, _ in inspect.getmembers(env_class, inspect.isfunction)
        if not name.startswith("_") and name not in own
    }
    return type(f"Process{env_class.__name__}", (ProcessEnv, env_class), methods)


def process_backed(env_family: str) -> bool:
    return env_family in PROCESS_BACKED


def make_process_env(env_id: str, env_family: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> ProcessEnv:
    """The env ``env_id`` of a process-backed family, running in its own child process."""
    module, _, name = PROCESS_BACKED[env_family].partition(":")
    env_class = getattr(importlib.import_module(module), name)
    env: ProcessEnv = proxy_class(env_class)(env_id, timeout_s=timeout_s)
    return env
