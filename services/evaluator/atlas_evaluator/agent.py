"""The ReAct agent loop of one episode, as a state machine the runner drives in batches.

The chat is laid out exactly like the training data (AgentGym / ``atlas generate``): the env's
instruction as the first user turn, the fixed acknowledgement as the first assistant turn, then the
first observation; after that the policy's ``Thought: ... Action: ...`` replies are assistant turns
and the env's feedback user turns. Train and eval therefore see the same chat template.

An :class:`EpisodeLoop` does not call the policy itself: :meth:`EpisodeLoop.request` says what it
waits for and :meth:`EpisodeLoop.apply` takes the reply and steps the env, so the runner can send the
requests of many episodes to the policy as one batch.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass, field
from typing import Any

from atlas.data.model import Message, Role, Trajectory
from atlas_evaluator.envs.base import StepResult, TextEnv
from atlas_evaluator.generate import ACKNOWLEDGEMENT
from atlas_evaluator.policies.base import PolicyReply, PolicyRequest

# "Action:" then the action on the same line or the next non-empty one; the last "Action:" wins.
_ACTION = re.compile(r"action\s*:\s*", re.IGNORECASE)
FORMAT_FEEDBACK = (
    "Invalid format: no action found. End your reply with a line 'Action:' followed by exactly one action."
)


class StopReason(enum.StrEnum):
    DONE = "done"  # the env ended the episode (solved or failed for good)
    MAX_TURNS = "max_turns"  # the turn budget ran out
    CONTEXT_LENGTH = "context_length"  # the chat no longer fits the model's context
    ERROR = "error"  # the env raised (its message is the final observation)


def parse_action(text: str) -> str | None:
    """The action in a ReAct reply, or ``None`` when there is no non-empty ``Action:`` part."""
    matches = list(_ACTION.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    for line in rest.splitlines():
        action = line.strip().strip("`").strip()
        if action:
            return action
    return None


@dataclass(slots=True)
class EpisodeResult:
    """A finished episode: transcript plus the numbers the report aggregates."""

    episode_id: str
    env_id: str
    seed: int
    task: str
    messages: list[Message]
    success: bool
    reward: float
    score: float
    turns: int
    invalid_actions: int
    parse_failures: int
    stop_reason: StopReason
    seconds: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    final_observation: str = ""
    policy: dict[str, Any] = field(default_factory=dict)

    def to_trajectory(self) -> Trajectory:
        """The transcript in the data model (written as AgentGym so the selector can read it back)."""
        metadata = {
            "env": self.env_id,
            "task": self.task,
            "seed": str(self.seed),
            "success": "true" if self.success else "false",
            "reward": f"{self.reward:.4f}",
            "score": f"{self.score:.4f}",
            "turns": str(self.turns),
            "stop_reason": str(self.stop_reason),
            "invalid_actions": str(self.invalid_actions),
            "parse_failures": str(self.parse_failures),
            "final_observation": self.final_observation,
        }
        metadata.update({f"policy.{k}": str(v) for k, v in self.policy.items()})
        return Trajectory(
            id=self.episode_id,
            messages=list(self.messages),
            source_env=self.env_id,
            task=self.task,
            metadata=metadata,
        )


class EpisodeLoop:
    """One episode in flight: ``request()`` -> policy -> ``apply(reply)`` until ``finished``."""

    def __init__(self, episode_id: str, env: TextEnv, seed: int, max_turns: int) -> None:
        self.episode_id = episode_id
        self.env = env
        self.seed = seed
        self.max_turns = max_turns
        self.started = time.perf_counter()
        self.reset = env.reset(seed=seed)
        self.messages = [
            Message(Role.USER, self.reset.instruction),
            Message(Role.ASSISTANT, ACKNOWLEDGEMENT),
            Message(Role.USER, self.reset.observation),
        ]
        self.turns = 0
        self.reward = 0.0
        self.score = 0.0
        self.success = False
        self.invalid_actions = 0
        self.parse_failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.final_observation = ""
        self.stop_reason: StopReason | None = None if max_turns > 0 else StopReason.MAX_TURNS

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None

    def request(self) -> PolicyRequest:
        return PolicyRequest(
            self.episode_id, [{"role": str(m.role), "content": m.content} for m in self.messages]
        )

    def apply(self, reply: PolicyReply) -> StepResult | None:
        """Take the policy's reply, step the env with its action; returns the env's answer (if stepped)."""
        if self.finished:
            raise RuntimeError(f"episode {self.episode_id} already stopped ({self.stop_reason})")
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        if reply.context_exceeded:
            self.stop_reason = StopReason.CONTEXT_LENGTH
            return None
        action = parse_action(reply.text)
        self.messages.append(Message(Role.ASSISTANT, reply.text))
        self.turns += 1
        if action is None:
            # A parse failure costs a turn and is answered like any invalid action: the env's own
            # feedback for an empty action (its "not recognized" text and available actions).
            self.parse_failures += 1
            result = self.env.step("")
            observation = f"{FORMAT_FEEDBACK}\n{result.observation}"
        else:
            result = self.env.step(action)
            observation = result.observation
        if not result.info.get("valid", True):
            self.invalid_actions += 1
        self.reward += result.reward
        self.score = float(result.info.get("score", self.score))
        if result.done:
            self.success = bool(result.info.get("success"))
            self.final_observation = observation
            self.stop_reason = StopReason.DONE
        elif self.turns >= self.max_turns:
            self.final_observation = observation
            self.stop_reason = StopReason.MAX_TURNS
        else:
            self.messages.append(Message(Role.USER, observation))
        return result

    def fail(self, exc: BaseException) -> None:
        """Stop on an env that raised: the episode counts as failed, the suite goes on."""
        self.final_observation = f"{type(exc).__name__}: {exc}"
        self.stop_reason = StopReason.ERROR

    def result(self, policy: dict[str, Any] | None = None) -> EpisodeResult:
        if self.stop_reason is None:
            raise RuntimeError(f"episode {self.episode_id} is still running")
        return EpisodeResult(
            episode_id=self.episode_id,
            env_id=self.env.env_id,
            seed=self.seed,
            task=self.reset.task,
            messages=list(self.messages),
            success=self.success,
            reward=self.reward,
            score=self.score,
            turns=self.turns,
            invalid_actions=self.invalid_actions,
            parse_failures=self.parse_failures,
            stop_reason=self.stop_reason,
            seconds=time.perf_counter() - self.started,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            final_observation=self.final_observation,
            policy=dict(policy or {}),
        )
