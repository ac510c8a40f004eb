"""EarlyExitClassifier.fit: one temperature per exit (and a threshold) from texts and labels."""

import numpy as np
import pytest
from tiny_models import build_tiny_classifier, sentiment_rows

from tango.early_exit.calibration import calibrate_early_exit


def tiny_early_exit(directory):
    from transformers import AutoModel, AutoTokenizer

    from tango.early_exit import EarlyExitClassifier
    from tango.early_exit.model import MultiExitModel

    path = build_tiny_classifier(directory, layers=2)
    model = MultiExitModel(AutoModel.from_pretrained(path), exits="all", num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return EarlyExitClassifier(model, tokenizer, labels=["negative", "positive"], max_length=32)


def test_fit_is_calibrate_early_exit(tmp_path):
    data = sentiment_rows(120, seed=3)
    names = np.asarray(data.label_names)[data.labels]
    clf = tiny_early_exit(tmp_path / "m")
    assert clf.fit(data.texts, names, max_drop=1.0) is clf
    assert len(clf.temperatures) == 2 and clf.threshold == clf.calibration_["threshold"]
    again = tiny_early_exit(tmp_path / "m")
    report = calibrate_early_exit(again, data, max_drop=1.0)
    assert clf.temperatures == again.temperatures and clf.threshold == again.threshold
    assert report["exits"] == clf.calibration_["exits"]
    clf.fit(data.texts, data.labels)  # ids work too; no target: temperatures only, on every row
    alone = calibrate_early_exit(tiny_early_exit(tmp_path / "m"), data)
    assert clf.temperatures == [e["temperature"] for e in alone["exits"]] != again.temperatures
    with pytest.raises(ValueError, match="one label per text"):
        clf.fit(data.texts, data.labels[:-1])


def test_the_exit_threshold_is_certified_by_a_walk_from_the_most_cautious_down():
    """Each threshold is tested by the paired drop bound, most cautious first; the walk stops at
    the first failure (a later pass does not count) and the passed one of least compute wins."""
    from tango.bounds import drop_upper_bound
    from tango.early_exit.calibration import NEVER_EARLY, ExitCurve, _certified_exit_threshold

    n = 2000
    # thresholds 0.99 .. 0.6: the drop grows as the threshold falls, except a lucky 0.6
    curve = ExitCurve(
        threshold=[0.6, 0.7, 0.8, 0.9, 0.99],
        accuracy=[0.9] * 5,
        mean_exit_layer=[1.0, 1.5, 2.0, 3.0, 5.5],
        lost=[0, 60, 12, 4, 0],
        gained=[0, 0, 0, 0, 0],
    )
    bounds = drop_upper_bound(curve.lost, curve.gained, n, 0.9)
    assert bounds[4] <= bounds[3] <= 0.5 < bounds[2] and bounds[0] <= 0.5  # 0.6 passes, after a failure
    assert _certified_exit_threshold(curve, n, 0.5, 0.9) == (0.9, pytest.approx(bounds[3]))
    # nothing passes: no row leaves early
    assert _certified_exit_threshold(curve, 50, 0.0, 0.9) == (NEVER_EARLY, None)


def test_rows_that_fit_the_temperatures_never_certify_the_threshold():
    """Certifying, 30% of the rows (seeded) fit the temperatures and give the candidates; the walk
    and its curve are on the other 70%, as a cascade's gate splits them."""
    from tango.calibration import TemperatureScaler
    from tango.early_exit.calibration import fit_exits
    from tango.tuning import temperature_split

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    logits = (
        rng.normal(size=(3, 1000, 2)) + 2.0 * np.eye(2)[labels] * np.array([0.5, 1.0, 2.0])[:, None, None]
    )
    fitted = fit_exits(logits, labels, [1, 2, 3], max_drop=1.0, seed=4)
    fit_rows, walk_rows = temperature_split(1000, 0.3, 4)
    assert (
        (fitted["temperature_rows"], fitted["threshold_rows"])
        == (300, 700)
        == (len(fit_rows), len(walk_rows))
    )
    assert not set(fit_rows) & set(walk_rows)
    expected = [TemperatureScaler().fit(z[fit_rows], labels[fit_rows]).temperature_ for z in logits]
    assert [s.temperature_ for s in fitted["scalers"]] == expected
    last_right = (logits[-1].argmax(1) == labels)[walk_rows]
    most_cautious = int(np.argmax(fitted["curve"]["threshold"]))
    assert fitted["curve"]["accuracy"][most_cautious] == pytest.approx(last_right.mean())  # the 700 rows
    # no candidate so close to 1 that float32 and float64 confidences disagree on who leaves
    assert max(fitted["curve"]["threshold"]) <= 1 - 1e-6
    with pytest.raises(ValueError, match="max_drop must be >= 0"):
        fit_exits(logits, labels, [1, 2, 3], max_drop=-0.1)
