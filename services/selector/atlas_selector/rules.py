"""The ``rules`` backend: a deterministic, model-free critical-step selector (the CPU default).

It scores every step from signals any text-environment trajectory carries, then keeps the
best-scoring steps under the cap. The signals follow the four ATLaS criteria:

* PLAN_CREATION: plan language ("first ... then", "I need to", "my goal") in the first steps,
  or a dense re-plan later on;
* CRITICAL_OBSERVATION: the observation before the step revealed things not seen before, and the
  thought picks them up (the agent adjusts to new information);
* CRITICAL_ACTION: an action that changes the environment's state (take, put, open, craft, buy...)
  rather than looking or moving, especially one the environment answers with success or reward,
  and the action that completes the task;
* SELF_CORRECTION: the observation before the step reports a failure ("Nothing happens", an
  error) and the agent does something different this time.

Nothing here is tuned to one environment's wording: the word lists are generic English verbs of
acting, failing and planning. Its agreement with hand labels is measured by ``atlas select-eval``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from atlas.data.model import Criterion, Trajectory
from atlas_selector.contract import ProposedLabel
from atlas_selector.steps import Step, steps_of

_PLAN = re.compile(
    r"\b(first(?:ly)?|then|next|after that|afterwards|finally|plan|steps?|need to|needs to|have to|"
    r"must|goal|in order to|so that|strategy|sub-?goals?|i will|i'll|i should|to do this|"
    r"start by|begin by|once)\b",
    re.IGNORECASE,
)
_FAILURE = re.compile(
    r"nothing happens|\berror\b|\binvalid\b|can't|cannot|could not|couldn't|unable|not possible|"
    r"not available|not found|no such|failed|doesn't|does not work|is not (?:valid|possible)|"
    r"you don't|not enough|don't have|wrong|unknown|not recogni[sz]ed|is locked|there is no",
    re.IGNORECASE,
)
_CORRECTION = re.compile(
    r"\b(instead|mistake|didn't work|did not work|wrong|oops|try again|another|failed|realize|"
    r"actually|fix|correct|missing|forgot|should have|rather)\b",
    re.IGNORECASE,
)
_SUCCESS = re.compile(
    r"\byou (?:pick(?:ed)? up|take|took|put|place[d]?|open(?:ed)?|unlock(?:ed)?|craft(?:ed)?|got|"
    r"now have|buy|bought|move[d]?|turn(?:ed)? on|activate[d]?|mix(?:ed)?|pour(?:ed)?)\b|"
    r"\bcrafted\b|\bsuccess|\bcompleted?\b|task (?:is )?(?:done|solved)|you (?:win|won)|\breward\b|"
    r"\bscore\b|congratulations|thank you for shopping|is now (?:on|open|activated|unlocked)|"
    r"\bgot\b|\bis now in\b",
    re.IGNORECASE,
)
# First words of actions that change the environment's state.
_STATE_VERBS = frozenset(
    [
        "pick",
        "pickup",
        "take",
        "put",
        "place",
        "drop",
        "open",
        "close",
        "toggle",
        "unlock",
        "lock",
        "craft",
        "get",
        "buy",
        "use",
        "heat",
        "cool",
        "clean",
        "slice",
        "cook",
        "mix",
        "activate",
        "deactivate",
        "focus",
        "connect",
        "disconnect",
        "pour",
        "insert",
        "wear",
        "eat",
        "drink",
        "give",
        "fill",
        "plant",
        "water",
        "move",
        "turn",
        "dunk",
        "stir",
        "break",
        "cut",
        "push",
        "pull",
        "attach",
        "combine",
    ]
)
# Actions that only look, move the agent, or wait.
_PASSIVE_VERBS = frozenset(
    ["look", "examine", "inventory", "check", "search", "go", "goto", "teleport", "wait", "read", "think"]
)
_PASSIVE_PHRASES = ("move forward", "turn left", "turn right", "check available", "look around")
_PURCHASE = re.compile(r"click\[\s*buy", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z0-9-]{2,}")
_STOP = frozenset(
    [
        "the",
        "and",
        "you",
        "are",
        "there",
        "for",
        "this",
        "that",
        "with",
        "your",
        "from",
        "have",
        "has",
        "not",
        "can",
        "now",
        "into",
        "onto",
        "what",
        "will",
        "its",
        "was",
        "were",
        "which",
        "then",
        "than",
        "there",
        "here",
        "see",
        "some",
        "any",
        "all",
        "one",
        "two",
        "also",
        "but",
    ]
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _verb(action: str) -> str:
    head = re.split(r"[\s\[(:]", action.strip().lower(), maxsplit=1)
    return head[0] if head else ""


@dataclass
class StepScore:
    index: int
    score: float = 0.0
    parts: dict[Criterion, float] = field(default_factory=dict)

    def add(self, criterion: Criterion, points: float) -> None:
        self.parts[criterion] = self.parts.get(criterion, 0.0) + points
        self.score += points


def score_steps(trajectory: Trajectory) -> list[StepScore]:
    """A score per step; the higher, the more critical (see the module docstring for the signals)."""
    steps = steps_of(trajectory)
    seen = _words(trajectory.task)
    scores: list[StepScore] = []
    previous_action = ""
    for step in steps:
        scored = StepScore(step.index)
        seen_before = set(seen)
        new_words = _words(step.before) - seen_before
        seen |= _words(step.before)
        _plan(step, scored, len(steps))
        _observation(step, new_words, scored)
        _action(step, scored, last=step.index == len(steps) - 1)
        _correction(step, previous_action, scored)
        seen |= _words(step.thought) | _words(step.action)
        previous_action = step.action.strip().lower()
        scores.append(scored)
    return scores


def _plan(step: Step, scored: StepScore, step_count: int) -> None:
    hits = len(_PLAN.findall(step.thought))
    if not hits:
        return
    if step.index <= 1:
        scored.add(Criterion.PLAN_CREATION, 1.5 + 0.5 * min(hits, 4) - 0.5 * step.index)
    elif hits >= 3:
        scored.add(Criterion.PLAN_CREATION, 0.5 + 0.25 * min(hits, 6))


def _observation(step: Step, new_words: set[str], scored: StepScore) -> None:
    if step.index == 0 or len(new_words) < 3 or _FAILURE.search(step.before):
        return
    picked_up = len(new_words & _words(step.thought + " " + step.action))
    if picked_up:
        scored.add(Criterion.CRITICAL_OBSERVATION, 0.5 * min(picked_up, 5))


def _action(step: Step, scored: StepScore, *, last: bool) -> None:
    action = step.action.lower()
    verb = _verb(action)
    failed = bool(_FAILURE.search(step.after))
    succeeded = bool(_SUCCESS.search(step.after))
    changes_state = (verb in _STATE_VERBS or bool(_PURCHASE.search(action))) and not any(
        action.startswith(p) for p in _PASSIVE_PHRASES
    )
    if changes_state and not failed:
        scored.add(Criterion.CRITICAL_ACTION, 1.5 + (1.0 if succeeded else 0.0))
    elif succeeded and not failed:
        scored.add(Criterion.CRITICAL_ACTION, 0.5)
    if last and not failed and (changes_state or succeeded):
        scored.add(Criterion.CRITICAL_ACTION, 1.5)
    if failed:
        scored.score -= 1.5
    if verb in _PASSIVE_VERBS or any(action.startswith(p) for p in _PASSIVE_PHRASES):
        scored.score -= 0.5


def _correction(step: Step, previous_action: str, scored: StepScore) -> None:
    if step.index == 0 or not _FAILURE.search(step.before):
        return
    if step.action.strip().lower() == previous_action:
        return  # repeating the failed action is not a correction
    points = 2.5 + (0.5 if _CORRECTION.search(step.thought) else 0.0)
    scored.add(Criterion.SELF_CORRECTION, points)


class RulesBackend:
    """Keeps the ``cap`` best-scoring steps; ties go to the earlier step."""

    name = "rules"

    def propose(self, trajectory: Trajectory, cap: int, seed: int) -> list[ProposedLabel]:
        ranked = sorted(score_steps(trajectory), key=lambda s: (-s.score, s.index))
        return [_label(s) for s in ranked[:cap]]


def _label(scored: StepScore) -> ProposedLabel:
    positive = [c for c, points in scored.parts.items() if points > 0]
    if not positive:
        # A step kept only to meet the minimum: name the signal it came closest on.
        positive = [max(scored.parts, key=scored.parts.__getitem__)] if scored.parts else []
    criteria = positive or [Criterion.CRITICAL_ACTION]
    why = ", ".join(f"{c.value.lower()} {scored.parts.get(c, 0.0):.1f}" for c in criteria)
    return ProposedLabel(
        scored.index, tuple(c.value for c in criteria), f"rules score {scored.score:.2f}: {why}"
    )
