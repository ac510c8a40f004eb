"""The label-free gate (issue #28): thresholds fitted on unlabelled rows like the traffic,
certified on disagreement with the last tier, which bounds the accuracy drop without a label."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_classifier, calibrate_args, sentiment_rows

from tango.cascade import Cascade
from tango.cli import cli
from tango.tiers import Tier


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("label_free")
    return [build_tiny_classifier(root / f"t{k}", seed=k) for k in range(2)]


@pytest.fixture(scope="module")
def tiers(tier_dirs):
    return [Tier.from_pretrained(d, precision="fp32") for d in tier_dirs]


def test_unlabelled_rows_fit_the_gate_against_the_last_tier(tiers):
    texts = sentiment_rows(400, seed=3).texts
    cascade = Cascade(tiers).fit(texts, None, max_drop=5.0)
    report = cascade.calibration_
    assert report["reference"] == "last tier" and report["target"] == {"max_drop": 5.0}
    assert cascade.temperatures_[-1] == 1.0  # nothing to fit the last tier to
    assert report["tiers"][-1]["accuracy"] == 1.0  # against its own answers
    # the last tier's answers as labels give the same first-tier temperature; the label-free walk
    # bounds its drop exactly (Clopper-Pearson on the disagreeing rows: nothing can be gained)
    from tango.bounds import clopper_pearson_upper

    answers = tiers[-1].predict(texts)
    pseudo = Cascade(tiers).fit(texts, answers, max_drop=5.0)
    assert pseudo.temperatures_[0] == cascade.temperatures_[0]
    chosen = report["choice"]
    disagreed = np.array([round(chosen["drop"] * chosen["rows"] / 100)])
    assert chosen["drop_bound"] == pytest.approx(
        100 * clopper_pearson_upper(disagreed, chosen["rows"], 0.1)[0]
    )
    # what was certified: disagreement with the last tier, within the bound on these rows too
    choice = report["choice"]
    agree = (cascade.predict(texts) == answers).mean()
    assert 100 * (1 - agree) <= choice["drop_bound"] + 1e-9 and choice["drop_bound"] <= 5.0


def test_disagreement_bounds_the_drop_on_labelled_rows(tiers):
    data = sentiment_rows(500, seed=4)
    names = np.asarray(data.label_names)[data.labels]
    for threshold in (0.55, 0.7, 0.9, 0.99):
        cascade = Cascade(tiers, thresholds=threshold)
        predicted, last = cascade.predict(data.texts), tiers[-1].predict(data.texts)
        drop = (last == names).mean() - (predicted == names).mean()
        assert drop <= (predicted != last).mean() + 1e-12


def test_a_single_tier_cannot_calibrate_without_labels(tiers):
    with pytest.raises(ValueError, match="give two tiers or more"):
        Cascade(tiers[:1]).fit(["a film"], None, max_drop=1.0)


def test_tango_calibrate_unlabelled_with_a_labelled_check(tier_dirs, tmp_path):
    args = calibrate_args(tmp_path, tier_dirs, 300, 100, seed=5)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "calibrated on 300 unlabelled rows" in result.output
    assert "disagreement with the last tier" in result.output and "labelled check (100 rows" in result.output
    saved = json.loads((tmp_path / "c" / "cascade.json").read_text())
    assert saved["calibration"]["reference"] == "last tier"
    refused = CliRunner().invoke(cli, args + ["--dev-fraction", "0.5"])
    assert refused.exit_code == 2 and "--dev-fraction does not apply to --unlabelled" in refused.output


def test_the_label_free_bound_is_exact_where_the_adjusted_wald_one_falls_short():
    """With the last tier as the reference nothing is gained and the drop is a binomial rate. For
    a true rate just above the target, the chance of certifying it (exact binomial sums) stays
    within the promised 10% with the Clopper-Pearson bound; the adjusted Wald bound exceeds it."""
    from scipy import stats

    from tango.bounds import disagreement_upper_bound, drop_upper_bound

    worst = {"exact": 0.0, "wald": 0.0}
    for n in range(500, 3001, 100):
        k = np.arange(n + 1)
        chance = stats.binom.pmf(k, n, 0.005 + 1e-6)
        worst["exact"] = max(worst["exact"], chance[disagreement_upper_bound(k, n, 0.9) <= 0.5].sum())
        worst["wald"] = max(worst["wald"], chance[drop_upper_bound(k, 0 * k, n, 0.9) <= 0.5].sum())
    assert worst["exact"] <= 0.1 < worst["wald"]
    # a batch of new rows: the population at half the error, the batch's binomial quantile at the other
    assert (
        disagreement_upper_bound(5, 1000, 0.9, new_rows=1000)[0] > disagreement_upper_bound(5, 1000, 0.9)[0]
    )
    with pytest.raises(ValueError, match="disagreed counts"):
        disagreement_upper_bound(11, 10, 0.9)


def test_the_label_free_gate_certifies_with_the_exact_bound():
    from tango.bounds import clopper_pearson_upper
    from tango.thresholds import certify
    from tango.tuning import Target, fit_gate

    rng = np.random.default_rng(0)
    n = 3000
    last = rng.normal(size=(n, 2)) * 3
    first = last + rng.normal(size=(n, 2)) * 2  # agrees with the last tier where it is sure
    answers = last.argmax(1)
    gate = fit_gate([first, last], answers, [1.0, 10.0], Target(max_drop=1.0), fit_last=False)
    choice = gate.choice
    disagreed = round(choice["drop"] / 100 * choice["rows"])  # nothing gained: the drop is disagreement
    assert choice["drop_bound"] == pytest.approx(
        clopper_pearson_upper(np.array([disagreed]), choice["rows"], 0.1)[0] * 100
    )
    assert choice["drop_bound"] <= 1.0 and choice["reached"][1] < 0.9
    rows = ([np.full(4, 0.9)], [np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1])], np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="not the last tier's answers"):  # tier 1 right where tier 2 is not
        certify(*rows, [1.0, 2.0], 1.0, order_rows=rows, label_free=True)
    with pytest.raises(ValueError, match="max_drop must be >= 0"):
        Target(max_drop=-0.5)
