"""Cascade as a scikit-learn style estimator: fit, get_params/set_params, score, the fitted round trip."""

import numpy as np
import pytest
from tiny_models import build_tiny_classifier, sentiment_rows

from tango.cascade import Cascade
from tango.tiers import Tier
from tango.tuning import Target


@pytest.fixture(scope="module")
def tiers(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    return [
        Tier.from_pretrained(build_tiny_classifier(root / f"t{k}", seed=k), precision="fp32")
        for k in range(2)
    ]


@pytest.fixture(scope="module")
def rows():
    data = sentiment_rows(300, seed=11)
    return data.texts, data.labels, np.asarray(data.label_names)[data.labels]


def test_fit_sets_fitted_attributes_and_leaves_the_parameters(tiers, rows):
    texts, ids, _ = rows
    cascade = Cascade(tiers, thresholds=0.9)
    assert cascade.fit(texts, ids, max_escalation=0.3) is cascade
    assert cascade.thresholds == 0.9 and cascade.temperatures is None  # parameters as given
    assert len(cascade.temperatures_) == 2 and all(t > 0 for t in cascade.temperatures_)
    assert cascade.thresholds_ == cascade.calibration_["thresholds"] and len(cascade.thresholds_) == 1
    assert cascade.calibration_["target"] == {"max_escalation": 0.3}
    # predict answers with the fitted gate: it escalates what the fit expected, on the same rows
    result = cascade.predict_detailed(texts)
    assert result.stats.escalated[0] == pytest.approx(cascade.calibration_["expected"]["escalated"])


def test_fit_takes_label_names_or_ids(tiers, rows):
    texts, ids, names = rows
    by_id = Cascade(tiers).fit(texts, ids, max_drop=5.0)
    by_name = Cascade(tiers).fit(texts, list(names), max_drop=5.0)
    by_shouted_name = Cascade(tiers).fit(texts, [n.upper() for n in names], max_drop=5.0)
    by_id_text = Cascade(tiers).fit(texts, [str(i) for i in ids], max_drop=5.0)  # ids read from a file
    for other in (by_name, by_shouted_name, by_id_text):
        assert other.temperatures_ == by_id.temperatures_ and other.thresholds_ == by_id.thresholds_


def test_fit_without_a_target_fits_temperatures_only(tiers, rows):
    texts, ids, _ = rows
    cascade = Cascade(tiers, thresholds=0.7).fit(texts, ids)
    assert cascade.thresholds_ == [0.7] and cascade.calibration_["target"] == {}
    assert cascade.temperatures_ == [t["temperature"] for t in cascade.calibration_["tiers"]]


def test_fit_refuses_bad_labels(tiers, rows):
    texts, ids, _ = rows
    with pytest.raises(ValueError, match="300 texts but 299 labels"):
        Cascade(tiers).fit(texts, ids[:-1])
    with pytest.raises(ValueError, match=r"labels \['neutral'\] are not among"):
        Cascade(tiers).fit(texts[:2], ["positive", "neutral"])
    with pytest.raises(ValueError, match=r"label ids \[2\]"):
        Cascade(tiers).fit(texts[:2], [0, 2])
    with pytest.raises(ValueError, match="give one target"):
        Cascade(tiers).fit(texts, ids, max_drop=1.0, min_speedup=2.0)


def test_get_params_and_set_params(tiers, rows):
    texts, ids, _ = rows
    cascade = Cascade(tiers, thresholds=0.8, confidence="margin", temperatures=[1.5, 0.7])
    params = cascade.get_params()
    expected = {"tiers": tiers, "thresholds": 0.8, "confidence": "margin", "temperatures": [1.5, 0.7]}
    assert params == {**expected, "target": None}
    np.testing.assert_array_equal(Cascade(**params).predict_proba(texts), cascade.predict_proba(texts))

    cascade.set_params(confidence="maxprob", temperatures=None).fit(texts, ids, max_escalation=0.3)
    temperatures = cascade.temperatures_
    # setting thresholds discards thresholds_ only: what you set is what answers
    assert cascade.set_params(thresholds=0.0) is cascade
    assert not hasattr(cascade, "thresholds_") and cascade.temperatures_ == temperatures
    assert (cascade.predict_detailed(texts).tier == 0).all()
    cascade.set_params(temperatures=[1.0, 1.0])
    assert not hasattr(cascade, "temperatures_") and hasattr(cascade, "calibration_")
    cascade.set_params(tiers=tiers[::-1])  # other tiers: the whole fit is discarded
    assert not hasattr(cascade, "calibration_")
    with pytest.raises(ValueError, match="no parameter 'threshold'"):
        cascade.set_params(threshold=0.5)


def test_score_is_accuracy(tiers, rows):
    texts, ids, names = rows
    cascade = Cascade(tiers, thresholds=0.8)
    accuracy = float((cascade.predict(texts) == names).mean())
    assert cascade.score(texts, ids) == pytest.approx(accuracy)
    assert cascade.score(texts, names) == pytest.approx(accuracy)
    with pytest.raises(ValueError, match="one label per text"):
        cascade.score(texts[:3], ids[:2])


def test_a_fitted_cascade_round_trips(tiers, rows, tmp_path):
    texts, ids, _ = rows
    fitted = Cascade(tiers).fit(texts, ids, max_escalation=0.3)
    fitted.save_pretrained(tmp_path / "c")
    loaded = Cascade.from_pretrained(tmp_path / "c", precision="fp32")
    assert loaded.temperatures_ == fitted.temperatures_ and loaded.thresholds_ == fitted.thresholds_
    assert loaded.calibration_ == fitted.calibration_
    assert loaded.thresholds == fitted.thresholds_ and loaded.temperatures == fitted.temperatures_
    np.testing.assert_allclose(loaded.predict_proba(texts), fitted.predict_proba(texts), atol=1e-6)
    # an override replaces the fitted thresholds and keeps the fitted temperatures
    overridden = Cascade.from_pretrained(tmp_path / "c", thresholds=0.0, precision="fp32")
    assert not hasattr(overridden, "thresholds_") and overridden.temperatures_ == fitted.temperatures_
    assert (overridden.predict_detailed(texts[:5]).tier == 0).all()
    # an unfitted cascade comes back unfitted
    Cascade(tiers, thresholds=0.6).save_pretrained(tmp_path / "u")
    unfitted = Cascade.from_pretrained(tmp_path / "u", precision="fp32")
    assert unfitted.thresholds == [0.6] and not hasattr(unfitted, "thresholds_")
    assert not hasattr(unfitted, "calibration_")


def test_the_target_is_a_hyper_parameter(tiers, rows, tmp_path):
    from sklearn.base import clone

    texts, ids, _ = rows
    goal = Target(max_escalation=0.3, seed=2)
    cascade = Cascade(tiers, target=goal).fit(texts, ids)
    assert cascade.get_params()["target"] == goal and cascade.calibration_["target"] == {
        "max_escalation": 0.3
    }
    copy = clone(cascade)  # scikit-learn's clone: the parameters, none of the fit
    assert copy.target == goal and not hasattr(copy, "thresholds_")
    assert copy.fit(texts, ids).thresholds_ == cascade.thresholds_
    # the fit's keywords are a shorthand that the parameters then show; a goal replaces the goal
    cascade.fit(texts, ids, max_drop=5.0)
    assert cascade.target == Target(max_drop=5.0, seed=2)
    assert cascade.calibration_["target"] == {"max_drop": 5.0}
    # setting the target discards the fit made for the old one
    cascade.set_params(target={"max_escalation": 0.2})
    assert not hasattr(cascade, "thresholds_") and not hasattr(cascade, "calibration_")
    assert cascade.fit(texts, ids).calibration_["target"] == {"max_escalation": 0.2}  # a dict is read too
    cascade.save_pretrained(tmp_path / "c")
    assert Cascade.from_pretrained(tmp_path / "c", precision="fp32").target == Target(max_escalation=0.2)
    with pytest.raises(ValueError, match="give one target"):
        Target(max_drop=0.5, guarantee=0.1)
    with pytest.raises(TypeError, match="target must be"):
        Cascade(tiers, target=0.5).fit(texts, ids)
