import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import WORDS, build_tiny_classifier

from tango.cascade import Cascade
from tango.cli import cli
from tango.data import LabelledData
from tango.gate_report import CalibrationReport, check_held_out
from tango.tiers import Tier


def make_rows(n, seed):
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]
    labels = np.asarray([int("good" in t or "great" in t or "love" in t) for t in texts])
    return texts, labels


@pytest.fixture(scope="module")
def tiers(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuning")
    return [
        Tier.from_pretrained(build_tiny_classifier(root / f"t{k}", seed=k), precision="fp32")
        for k in range(2)
    ]


@pytest.fixture()
def dev_file(tmp_path):
    texts, labels = make_rows(300, seed=1)
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True)))
    return path


def test_calibration_fits_temperatures_and_meets_the_target(tiers, tmp_path):
    texts, labels = make_rows(300, seed=2)
    dev = LabelledData(texts, labels, ["negative", "positive"])
    cascade = Cascade(tiers, thresholds=0.9)
    report = fit_report(cascade, dev, max_escalation=0.3, report_dir=tmp_path / "r")
    assert cascade.temperatures_ == [t.temperature for t in report.tiers]
    assert cascade.temperatures is None and cascade.thresholds == 0.9  # the parameters stay as given
    for tier in report.tiers:
        assert tier.nll_after <= tier.nll_before + 1e-9  # temperature scaling minimises NLL
    assert report.expected["escalated"] <= 0.3
    # the stored threshold really escalates what the report says, on the same rows
    result = cascade.predict_detailed(texts)
    assert result.stats.escalated[0] == pytest.approx(report.expected["escalated"])
    for name in ("reliability_tier1.png", "reliability_tier2.png", "curve.png", "curve.json", "report.json"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    curve = json.loads((tmp_path / "r" / "curve.json").read_text())
    assert len(curve["threshold"]) >= len(set(np.round(result.confidence, 12))) - 1  # a fine sweep


def test_cli_calibrate_stores_the_threshold_that_run_then_uses(tiers, dev_file, tmp_path):
    out = tmp_path / "cascade"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "calibrate",
            str(out),
            "--tier1",
            str(tiers[0].path),
            "--tier2",
            str(tiers[1].path),
            "--dev",
            str(dev_file),
            "--dev-fraction",
            "0.5",
            "--max-escalation",
            "0.4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "held-out test (150 rows)" in result.output
    manifest = json.loads((out / "cascade.json").read_text())
    threshold = manifest["thresholds"][0]
    assert manifest["calibration"]["target"] == {"max_escalation": 0.4}
    loaded = Cascade.from_pretrained(out)
    assert loaded.thresholds == [threshold]
    assert Cascade.from_pretrained(out, thresholds=0.0).predict_detailed(["i loved it"]).tier[0] == 0
    # recalibrating in place on a different target updates the stored threshold
    again = runner.invoke(cli, ["calibrate", str(out), "--dev", str(dev_file), "--max-escalation", "0.05"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "cascade.json").read_text())["thresholds"][0] <= threshold


def test_refuses_to_report_accuracy_on_the_calibration_rows(tiers, dev_file, tmp_path):
    out = tmp_path / "cascade"
    result = CliRunner().invoke(
        cli,
        [
            "calibrate",
            str(out),
            "--tier1",
            str(tiers[0].path),
            "--tier2",
            str(tiers[1].path),
            "--dev",
            str(dev_file),
            "--test",
            str(dev_file),
        ],
    )
    assert result.exit_code == 1
    assert "rows this cascade was calibrated on" in result.output


def test_held_out_check_allows_disjoint_rows():
    texts, labels = make_rows(50, seed=3)
    from tango.gate_report import row_hashes

    calibration = {"dev_rows": row_hashes(texts[:25])}
    check_held_out(calibration, LabelledData(texts[25:], labels[25:], ["negative", "positive"]))
    with pytest.raises(ValueError, match="calibrated on"):
        check_held_out(calibration, LabelledData(texts, labels, ["negative", "positive"]))


def test_guarantee_target_is_recorded(tiers, tmp_path):
    texts, labels = make_rows(400, seed=4)
    cascade = Cascade(tiers)
    report = fit_report(
        cascade, LabelledData(texts, labels, ["negative", "positive"]), guarantee=0.2, delta=0.1
    )
    assert report.guarantee["risk_bound"] <= 0.2
    assert cascade.thresholds_ == [report.threshold]


def fit_report(cascade, data, **options):
    """``cascade.fit`` on a LabelledData's rows (labels as names), returning its report."""
    cascade.fit(data.texts, [data.label_names[i] for i in data.labels], **options)
    return CalibrationReport.from_dict(cascade.calibration_)
