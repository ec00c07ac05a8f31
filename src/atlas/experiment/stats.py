"""Statistics of an experiment: success rates and rewards with 95% confidence intervals.

Two kinds of uncertainty matter for an ablation table on a small budget:

* *task sampling*: a success rate over n episodes is a binomial proportion, so each env's rate gets
  a Wilson score interval (it stays inside [0, 1] and behaves at 0/n and n/n, where the normal
  approximation collapses to a zero-width interval);
* *averages over envs* (the paper's held-in / held-out columns, every env weighing the same) and mean
  rewards get a percentile bootstrap that resamples episodes *within* each env (stratified), so the
  interval keeps the design: every env keeps its episode count. Where every episode of a split
  failed (or every one succeeded) the bootstrap degenerates to a zero-width interval; the split's
  success rate then takes the Wilson interval of the pooled count instead.

Across run seeds (training randomness plus a fresh task sample per seed) we also report the mean of
the per-seed averages with a Student-t interval, which is the honest spread when seeds disagree.
Everything here is plain Python and deterministic (the bootstrap has a fixed seed).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
# Two-sided 95% Student-t quantiles by degrees of freedom (1..30); beyond 30 the normal value.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a 95% interval (``low == high == value`` when it cannot be estimated)."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "value": round(self.value, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "n": self.n,
        }


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there is no trial."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def t_quantile95(df: int) -> float:
    if df < 1:
        raise ValueError("df must be >= 1")
    return _T95[df - 1] if df <= len(_T95) else Z95


def mean_t_interval(values: Sequence[float]) -> Estimate:
    """Mean with a two-sided 95% Student-t interval; a single value has no spread to estimate."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, mean, mean, 1)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile95(n - 1) * math.sqrt(variance / n)
    return Estimate(mean, mean - half, mean + half, n)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already sorted values."""
    position = q * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return sorted_values[lower] * (1 - weight) + sorted_values[upper] * weight


def bootstrap_mean_of_means(
    groups: Mapping[str, Sequence[float]],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Estimate:
    """The mean over groups of each group's mean, with a stratified percentile-bootstrap 95% interval.

    With one group this is the bootstrap interval of that group's mean. Groups with no values are
    ignored (an env that played no episode has no rate).
    """
    kept = {name: list(values) for name, values in groups.items() if values}
    if not kept:
        raise ValueError("no values")
    names = sorted(kept)
    point = sum(sum(kept[k]) / len(kept[k]) for k in names) / len(names)
    n = sum(len(kept[k]) for k in names)
    if all(len(set(kept[k])) == 1 for k in names):
        return Estimate(point, point, point, n)  # every resample is the same
    rng = random.Random(seed)
    stats = []
    for _ in range(resamples):
        total = 0.0
        for k in names:
            values = kept[k]
            total += sum(rng.choice(values) for _ in values) / len(values)
        stats.append(total / len(names))
    stats.sort()
    return Estimate(point, _percentile(stats, 0.025), _percentile(stats, 0.975), n)


@dataclass(frozen=True)
class Episode:
    """One evaluated episode, the unit every interval here resamples."""

    env_id: str
    held_out: bool
    success: bool
    reward: float
    seed: int = 0


def env_summary(episodes: Sequence[Episode]) -> dict[str, dict[str, object]]:
    """Per env: episodes, successes, success rate (Wilson interval) and mean reward (bootstrap)."""
    by_env: dict[str, list[Episode]] = {}
    for episode in episodes:
        by_env.setdefault(episode.env_id, []).append(episode)
    out: dict[str, dict[str, object]] = {}
    for env_id in sorted(by_env):
        rows = by_env[env_id]
        successes = sum(e.success for e in rows)
        low, high = wilson_interval(successes, len(rows))
        reward = bootstrap_mean_of_means({env_id: [e.reward for e in rows]})
        out[env_id] = {
            "held_out": rows[0].held_out,
            "episodes": len(rows),
            "successes": successes,
            "success_rate": Estimate(successes / len(rows), low, high, len(rows)).as_dict(),
            "mean_reward": reward.as_dict(),
        }
    return out


def split_summary(episodes: Sequence[Episode], held_out: bool) -> dict[str, object] | None:
    """The paper's held-in or held-out column: mean over envs, stratified bootstrap over episodes."""
    rows = [e for e in episodes if e.held_out is held_out]
    if not rows:
        return None
    success: dict[str, list[float]] = {}
    reward: dict[str, list[float]] = {}
    for e in rows:
        success.setdefault(e.env_id, []).append(1.0 if e.success else 0.0)
        reward.setdefault(e.env_id, []).append(e.reward)
    rate = bootstrap_mean_of_means(success)
    successes = sum(e.success for e in rows)
    if successes in (0, len(rows)):
        # Every episode failed (or succeeded): every resample is the same and the bootstrap
        # interval has zero width, which would claim certainty; the pooled Wilson interval does not.
        low, high = wilson_interval(successes, len(rows))
        rate = Estimate(rate.value, low, high, rate.n)
    return {
        "envs": len(success),
        "episodes": len(rows),
        "success_rate": rate.as_dict(),
        "mean_reward": bootstrap_mean_of_means(reward).as_dict(),
    }


def split_point(episodes: Sequence[Episode], held_out: bool) -> float | None:
    """The split's success rate (mean over envs of each env's rate), without an interval."""
    rates: dict[str, list[float]] = {}
    for e in episodes:
        if e.held_out is held_out:
            rates.setdefault(e.env_id, []).append(1.0 if e.success else 0.0)
    if not rates:
        return None
    return sum(sum(v) / len(v) for v in rates.values()) / len(rates)


def across_seeds(per_seed_values: Sequence[float]) -> dict[str, float | int]:
    """Mean of per-seed success rates with a Student-t interval over seeds (zero width for one seed),
    cut to [0, 1]: with 3 seeds t(2) = 4.3, and a rate's interval would otherwise reach below 0."""
    estimate = mean_t_interval(per_seed_values)
    return Estimate(estimate.value, max(0.0, estimate.low), min(1.0, estimate.high), estimate.n).as_dict()


def condition_summary(episodes_by_seed: Mapping[int, Sequence[Episode]]) -> dict[str, object]:
    """Everything the table needs for one condition: pooled over seeds, plus the spread across seeds."""
    pooled = [e for seed in sorted(episodes_by_seed) for e in episodes_by_seed[seed]]
    summary: dict[str, object] = {"envs": env_summary(pooled), "seeds": sorted(episodes_by_seed)}
    for split, held_out in (("held_in", False), ("held_out", True)):
        pooled_split = split_summary(pooled, held_out)
        if pooled_split is None:
            continue
        per_seed = [split_point(episodes_by_seed[seed], held_out) for seed in sorted(episodes_by_seed)]
        pooled_split["success_rate_across_seeds"] = across_seeds([v for v in per_seed if v is not None])
        summary[split] = pooled_split
    return summary
