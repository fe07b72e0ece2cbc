"""Winner calls: exact Beta-Binomial probabilities, checked against scipy."""

from __future__ import annotations

import pytest
from scipy import integrate, stats

from sheets_sync.pipeline.report import CampaignSection, build_report
from sheets_sync.pipeline.winners import Arm, call_step, percent_floor, prob_beats
from tests.factories import step_stats


def scipy_p_beats(s1, n1, s2, n2):
    """P(p1 > p2) = ∫ f1(x) F2(x) dx, by numeric integration (independent of the sum)."""
    a = stats.beta(1 + s1, 1 + n1 - s1)
    b = stats.beta(1 + s2, 1 + n2 - s2)
    value, _ = integrate.quad(lambda x: a.pdf(x) * b.cdf(x), 0, 1,
                              points=[a.mean(), b.mean()], limit=500,
                              epsabs=1e-12, epsrel=1e-12)
    return value


@pytest.mark.parametrize("counts", [
    (20, 200, 9, 180),
    (9, 180, 20, 200),
    (3, 150, 1, 40),
    (0, 100, 0, 100),
    (0, 100, 5, 100),
    (50, 1000, 70, 1000),
    (400, 5000, 350, 5000),
    (120, 900, 100, 1100),
    (1, 1, 0, 1),
])
def test_probability_matches_scipy(counts):
    assert prob_beats(*counts) == pytest.approx(scipy_p_beats(*counts), abs=1e-6)


def test_probabilities_are_complementary():
    assert prob_beats(30, 300, 20, 250) + prob_beats(20, 250, 30, 300) == pytest.approx(1.0)


def test_leader_winner_and_each_other_variant():
    arms = [Arm("a", "A", 40, 300), Arm("b", "B", 12, 300), Arm("c", "C", 30, 300)]
    calls = call_step(arms)
    lead = calls["a"]
    assert lead.verdict == "leading"  # beats B surely, but C only ~88 %
    assert lead.probabilities["b"] == pytest.approx(scipy_p_beats(40, 300, 12, 300), abs=1e-6)
    assert lead.probabilities["c"] == pytest.approx(scipy_p_beats(40, 300, 30, 300), abs=1e-6)
    assert lead.text == f"Leading ({percent_floor(lead.probabilities['c'])}%)"
    assert calls["b"].verdict == "behind" and calls["b"].text.startswith("Behind A (")
    two = call_step(arms[:2])
    assert two["a"].verdict == "winner"
    assert two["a"].text == f"Winner ({percent_floor(scipy_p_beats(40, 300, 12, 300))}%)"


def test_guardrail_below_minimum_sample():
    arms = [Arm("a", "A", 40, 300), Arm("b", "B", 0, 99)]
    calls = call_step(arms)
    assert {c.text for c in calls.values()} == {"Too early"}
    assert call_step(arms, min_sample=50)["a"].verdict == "winner"


def test_one_variant_is_not_called():
    assert call_step([Arm("a", "A", 4, 300)]) == {}


def test_shown_percent_never_rounds_up_to_the_threshold():
    assert percent_floor(0.9499) == 94
    assert percent_floor(0.97) == 97


def _stat(step, variant, sent, replies, opps=None):
    return step_stats(step, variant, sent, replies=replies, unique_replies=replies,
                      opportunities=opps, unique_opportunities=opps)


def test_report_columns_and_highlight():
    stats_ = [_stat(0, 0, 400, 60, 10), _stat(0, 1, 400, 20, 1), _stat(1, 0, 50, 1, 0),
              _stat(1, 1, 500, 2, 0), _stat(None, None, 0, 3, 0)]
    report = build_report([CampaignSection("c", "C", stats_)], include_opportunities=True,
                          date_label="All time", winner_calls=True, min_sample=100)
    keys = [c.key for c in report.columns]
    assert keys[-2:] == ["reply_call", "opportunity_call"]
    reply = [r.values[keys.index("reply_call")] for r in report.all_rows]
    assert reply[0].startswith("Winner (") and reply[1].startswith("Behind A (")
    assert reply[2:4] == ["Too early", "Too early"]  # step 2 has a variant under 100 sent
    assert reply[4:] == ["", ""]  # unattributed row and total
    opp = report.all_rows[0].values[keys.index("opportunity_call")]
    assert opp.startswith(("Winner (", "Leading ("))
    assert report.all_rows[0].highlight == "winner"
    assert report.all_rows[1].highlight is None
