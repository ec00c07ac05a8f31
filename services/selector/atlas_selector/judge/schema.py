"""The JSON schema of a judge answer, built per trajectory so that structured outputs can only name
valid step indices and the four criteria."""

from __future__ import annotations

import json
from typing import Any

from atlas.data.model import Criterion
from atlas_selector.contract import ContractViolation, ProposedLabel

MAX_RATIONALE_CHARS = 100
# No uniqueItems on criteria: xgrammar (vLLM's default structured-output backend) refuses the
# schema with it; the repair rule removes duplicate criteria instead.


def answer_schema(step_count: int, cap: int, minimum: int, steps: range | None = None) -> dict[str, Any]:
    """The answer's schema: ``minimum`` to ``cap`` labels naming steps of ``steps`` (default: all)."""
    valid = steps if steps is not None else range(step_count)
    return {
        "type": "object",
        "properties": {
            "critical_steps": {
                "type": "array",
                "minItems": minimum,
                "maxItems": cap,
                "items": {
                    "type": "object",
                    "properties": {
                        "step": {"type": "integer", "enum": list(valid)},
                        "criteria": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": len(Criterion),
                            "items": {"type": "string", "enum": [c.value for c in Criterion]},
                        },
                        "rationale": {"type": "string", "maxLength": MAX_RATIONALE_CHARS},
                    },
                    "required": ["step", "criteria", "rationale"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["critical_steps"],
        "additionalProperties": False,
    }


def parse_answer(text: str) -> list[ProposedLabel]:
    """Proposals from the judge's JSON; the contract then repairs or refuses them.

    Only the envelope is checked here (JSON object with a ``critical_steps`` array of objects):
    anything inside is the repair rule's business, so one wrong index does not lose the whole answer.
    """
    try:
        answer = json.loads(text)
    except ValueError as error:
        raise ContractViolation(f"the judge's answer is not JSON ({error}): {text[:120]!r}") from None
    items = answer.get("critical_steps") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise ContractViolation(f"the judge's answer has no critical_steps array: {text[:120]!r}")
    proposals = []
    for item in items:
        if not isinstance(item, dict):
            continue
        criteria = item.get("criteria")
        rationale = item.get("rationale")
        proposals.append(
            ProposedLabel(
                item.get("step"),
                tuple(criteria) if isinstance(criteria, list) else (),
                rationale[:MAX_RATIONALE_CHARS] if isinstance(rationale, str) else "",
            )
        )
    return proposals
