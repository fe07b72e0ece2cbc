"""Winner calls between the variants of one step (pure: standard library only).

Each variant's rate (unique replies / sent, or unique opportunities / sent) gets a
Beta-Binomial posterior under a uniform prior: ``Beta(1 + successes, 1 + trials -
successes)``. The leader is the variant with the highest posterior mean; for every other
variant we report ``P(leader's true rate > that variant's)``, computed exactly with the
closed-form sum for two Beta variables with integer parameters (Evan Miller, "Formulas
for Bayesian A/B testing"), evaluated in log space. No sampling: the same counts always
give the same numbers.

A step is called only when every variant has at least ``min_sample`` emails sent; below
that the call is "Too early". The leader is a "Winner" when it beats every other variant
with probability >= ``threshold`` (95 % by default), else "Leading"; a "Leading" call is
worth shading only from ``SHADE_LEADING_FROM`` (80 %).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

DEFAULT_MIN_SAMPLE = 100
DEFAULT_THRESHOLD = 0.95
# A leader is shaded only from here: at 54 % the call is a coin flip, and a coloured row
# reads as a decision to whoever skims the tab.
SHADE_LEADING_FROM = 0.80

Verdict = Literal["winner", "leading", "behind", "too_early"]
# The caller's key for an arm (a report row key, a test's letter): calls come back under it.
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Arm(Generic[K]):
    """One variant: ``successes`` (e.g. unique replies) out of ``trials`` (sent)."""

    key: K
    label: str
    successes: int
    trials: int

    @property
    def alpha(self) -> int:
        return _alpha_beta(self.successes, self.trials)[0]

    @property
    def beta(self) -> int:
        return _alpha_beta(self.successes, self.trials)[1]

    @property
    def posterior_mean(self) -> float:
        alpha, beta = _alpha_beta(self.successes, self.trials)
        return alpha / (alpha + beta)


@dataclass(frozen=True)
class Call(Generic[K]):
    """The verdict for one variant of a step."""

    verdict: Verdict
    # Winner/leading: P(this variant beats the other) for each other variant.
    # Behind: {leader key: P(leader beats this variant)}.
    probabilities: dict[K, float] = field(default_factory=dict)
    leader: K | None = None
    leader_label: str = ""

    @property
    def probability(self) -> float | None:
        """The number shown: the smallest probability the leader beats any other."""
        return min(self.probabilities.values()) if self.probabilities else None

    @property
    def text(self) -> str:
        p = self.probability
        shown = "" if p is None else f"{percent_floor(p)}%"
        if self.verdict == "too_early":
            return "Too early"
        if self.verdict == "winner":
            return f"Winner ({shown})"
        if self.verdict == "leading":
            return f"Leading ({shown})"
        return f"Behind {self.leader_label} ({shown})"


def percent_floor(p: float) -> int:
    # Rounded down, so 94.7 % never reads "95%" on a row that is not called a winner.
    return int(math.floor(p * 100 + 1e-9))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _p_y_beats_x(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(Y > X) for X ~ Beta(a1, b1), Y ~ Beta(a2, b2), integer a2, summing a2 terms.

    Term i is ``exp(log B(a1 + i, b1 + b2) - log(b2 + i) - log B(1 + i, b2) - log B(a1,
    b1))``; the parts that do not depend on i are computed once, in the same order of
    operations as the term itself, so every float is what the plain formula gives.
    """
    lgamma, log, exp = math.lgamma, math.log, math.exp
    base = _log_beta(a1, b1)
    b12 = b1 + b2
    lgamma_b12, lgamma_b2 = lgamma(b12), lgamma(b2)
    terms = [
        exp(
            ((lgamma(a1 + i) + lgamma_b12) - lgamma(a1 + i + b12))
            - log(b2 + i)
            - ((lgamma(1 + i) + lgamma_b2) - lgamma(1 + i + b2))
            - base
        )
        for i in range(a2)
    ]
    return math.fsum(terms)


def _alpha_beta(successes: int, trials: int) -> tuple[int, int]:
    kept = max(0, min(successes, trials))
    return 1 + kept, 1 + max(0, trials - kept)


def prob_beats(a_successes: int, a_trials: int, b_successes: int, b_trials: int) -> float:
    """P(p_A > p_B) under independent Beta(1 + s, 1 + n - s) posteriors, exactly."""
    a_alpha, a_beta = _alpha_beta(a_successes, a_trials)
    b_alpha, b_beta = _alpha_beta(b_successes, b_trials)
    # Sum over the smaller alpha (fewer terms); the two orders are complements.
    if a_alpha <= b_alpha:
        p = _p_y_beats_x(b_alpha, b_beta, a_alpha, a_beta)
    else:
        p = 1.0 - _p_y_beats_x(a_alpha, a_beta, b_alpha, b_beta)
    return min(1.0, max(0.0, p))


def call_step(
    arms: Sequence[Arm[K]],
    *,
    min_sample: int = DEFAULT_MIN_SAMPLE,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[K, Call[K]]:
    """Verdict per arm key for one step; an empty dict when there is nothing to compare."""
    if len(arms) < 2:
        return {}
    if any(arm.trials < min_sample for arm in arms):
        return {arm.key: Call("too_early") for arm in arms}
    # Highest posterior mean; ties go to the larger sample, then to the first listed.
    means = [arm.posterior_mean for arm in arms]  # each worked out once, not per compare
    order = sorted(range(len(arms)), key=lambda i: (-means[i], -arms[i].trials, i))
    leader = arms[order[0]]
    beats = {
        arm.key: prob_beats(leader.successes, leader.trials, arm.successes, arm.trials)
        for arm in arms
        if arm is not leader
    }
    verdict: Verdict = "winner" if min(beats.values()) >= threshold else "leading"
    calls: dict[K, Call[K]] = {
        leader.key: Call(verdict, beats, leader.key, leader.label)
    }
    for arm in arms:
        if arm is not leader:
            calls[arm.key] = Call(
                "behind", {leader.key: beats[arm.key]}, leader.key, leader.label
            )
    return calls
