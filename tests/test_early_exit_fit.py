"""EarlyExitClassifier.fit: one temperature per exit (and a threshold) from texts and labels."""

import numpy as np
import pytest
from tiny_models import build_tiny_classifier, sentiment_rows

from tango.tuning import calibrate_early_exit


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
    clf.fit(data.texts, data.labels)  # ids work too; no target: temperatures only
    assert clf.temperatures == again.temperatures
    with pytest.raises(ValueError, match="one label per text"):
        clf.fit(data.texts, data.labels[:-1])
