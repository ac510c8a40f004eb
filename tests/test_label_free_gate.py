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
    # the same math as labels equal to the last tier's answers: the same thresholds
    answers = tiers[-1].predict(texts)
    pseudo = Cascade(tiers).fit(texts, answers, max_drop=5.0)
    assert pseudo.thresholds_ == cascade.thresholds_ and pseudo.temperatures_[0] == cascade.temperatures_[0]
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
