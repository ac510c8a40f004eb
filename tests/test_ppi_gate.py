"""Labelled and unlabelled rows in one bound on the drop (issue #28, item 4): prediction-powered
inference inside the same Learn-then-Test walk (`tango.bounds.ppi_drop_upper_bound`)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import build_tiny_classifier, calibrate_args, sentiment_rows

from tango.bounds import drop_upper_bound, ppi_drop_upper_bound
from tango.cascade import Cascade
from tango.cli import cli
from tango.tiers import Tier

# a row's (g, f): lost (1, 1), gained (-1, 1), both wrong but different (0, 1), agreeing (0, 0)
KINDS = np.array([[1, 1], [-1, 1], [0, 1], [0, 0]])


def draw(rng, shares, n):
    """Counts (lost, gained, disagreed) of ``n`` rows drawn with these kind ``shares``."""
    counts = rng.multinomial(n, shares)
    return counts[0], counts[1], counts[0] + counts[1] + counts[2]


def bounds_over_draws(shares, n=500, n_unlabelled=20000, draws=400, level=0.9):
    rng = np.random.default_rng(0)
    ppi, labelled = [], []
    for _ in range(draws):
        lost, gained, disagreed = draw(rng, shares, n)
        _, _, u_disagreed = draw(rng, shares, n_unlabelled)
        ppi.append(ppi_drop_upper_bound(lost, gained, disagreed, n, u_disagreed, n_unlabelled, level)[0])
        labelled.append(drop_upper_bound(lost, gained, n, level)[0])
    return np.array(ppi), np.array(labelled)


@pytest.mark.parametrize("shares", [[0.04, 0.002, 0.003, 0.955], [0.03, 0.02, 0.005, 0.945]])
def test_the_combined_bound_covers_the_true_drop(shares):
    true_drop = 100 * (shares[0] - shares[1])
    ppi, _ = bounds_over_draws(shares)
    assert np.mean(ppi >= true_drop) >= 0.85  # nominal 0.9; 400 draws


def test_it_is_tighter_than_labels_alone_where_disagreement_tracks_the_drop():
    ppi, labelled = bounds_over_draws([0.04, 0.002, 0.003, 0.955])
    assert np.median(ppi) < np.median(labelled) - 0.3  # points
    # where tier 1 often beats the last tier, disagreement says little: no worse than labels alone
    ppi, labelled = bounds_over_draws([0.03, 0.02, 0.005, 0.945])
    assert np.median(ppi) <= np.median(labelled) + 0.05


def test_counts_that_cannot_be_are_refused():
    with pytest.raises(ValueError, match="cannot be smaller"):
        ppi_drop_upper_bound([5], [5], [6], 100, [10], 1000, 0.9)
    with pytest.raises(ValueError, match="need labelled and unlabelled rows"):
        ppi_drop_upper_bound([0], [0], [0], 100, [0], 0, 0.9)


@pytest.fixture(scope="module")
def tier_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppi")
    return [build_tiny_classifier(root / f"t{k}", seed=k) for k in range(2)]


def test_cascade_fit_combines_labelled_and_unlabelled_rows(tier_dirs):
    tiers = [Tier.from_pretrained(d, precision="fp32") for d in tier_dirs]
    labelled, traffic = sentiment_rows(300, seed=7), sentiment_rows(1000, seed=8).texts
    names = [labelled.label_names[y] for y in labelled.labels]
    cascade = Cascade(tiers).fit(labelled.texts, names, max_drop=5.0, unlabelled=traffic)
    report = cascade.calibration_
    assert report["reference"] == "labels + last tier" and report["unlabelled_rows"] == 1000
    assert report["rows"] == 300 and report["choice"]["drop_bound"] <= 5.0
    # the temperatures come from the labelled rows alone: the same as without the unlabelled ones
    alone = Cascade(tiers).fit(labelled.texts, names, max_drop=5.0)
    assert alone.temperatures_ == cascade.temperatures_
    with pytest.raises(ValueError, match="combine with labelled ones"):
        Cascade(tiers).fit(traffic, None, max_drop=5.0, unlabelled=traffic)
    with pytest.raises(ValueError, match="certified max_drop only"):
        Cascade(tiers).fit(labelled.texts, names, max_escalation=0.5, unlabelled=traffic)


def test_tango_calibrate_combine(tier_dirs, tmp_path):
    args = calibrate_args(tmp_path, tier_dirs, 600, 200, seed=9)
    result = CliRunner().invoke(cli, args + ["--combine"])
    assert result.exit_code == 0, result.output
    assert "calibrated on 200 rows" in result.output and "beside 600 unlabelled rows" in result.output
    saved = json.loads((tmp_path / "c" / "cascade.json").read_text())
    assert saved["calibration"]["reference"] == "labels + last tier"
    refused = CliRunner().invoke(cli, args[:6] + ["--combine", "--dev", str(tmp_path / "dev.tsv")])
    assert refused.exit_code == 2 and "give --unlabelled" in refused.output
