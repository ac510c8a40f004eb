"""Fine-tuning a tiny model: it learns, resumes exactly, cuts layers and distils."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tiny_models import sentiment_rows

from tango.data import LabelledData
from tango.registry import registered
from tango.training import TrainConfig, _loss, train_classifier

# Small and fast: a few hundred rows, a tiny model, a high learning rate, fp32 for determinism.
FAST = {"epochs": 3, "batch_size": 16, "lr": 3e-3, "max_length": 16, "bf16": False}


def dies_after(steps: int):
    """A loss that kills training (like Ctrl-C) in the step after ``steps`` steps."""
    calls = []

    def loss(*args):
        calls.append(1)
        if len(calls) > steps:
            raise KeyboardInterrupt
        return _loss(*args)

    return loss


@pytest.fixture(scope="module")
def start_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model re-initialised at BERT's usual scale (std 0.02), which trains in a second;
    the shared fixture's deliberately wide weights (spread-out confidences) barely train."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    out = tmp_path_factory.mktemp("start")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    config = AutoConfig.from_pretrained(out)
    config.initializer_range = 0.02
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained(start_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    result = train_classifier(
        start_dir, sentiment_rows(320, 0), out, dev=sentiment_rows(200, 1), name="tiny-sentiment", **FAST
    )
    return out, result


def test_a_tiny_model_learns(trained):
    out, result = trained
    assert result.dev_accuracy > 0.8  # chance is 0.5
    record = json.loads((out / "tango_train.json").read_text())
    assert record["dev_accuracy"] == result.dev_accuracy and record["train_rows"] == 320
    assert not (out / "checkpoint").exists()


def test_trained_tier_is_registered_with_its_labels(trained):
    out, _ = trained
    entry = registered()["tiny-sentiment"]
    assert entry["path"] == str(out.resolve()) and entry["role"] == "tier"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_resume_continues_exactly_where_a_killed_run_stopped(start_dir, tmp_path, monkeypatch):
    data = sentiment_rows(96, 2)
    options = {**FAST, "epochs": 1, "checkpoint_every": 2}
    train_classifier(start_dir, data, tmp_path / "straight", **options)

    monkeypatch.setattr("tango.training._loss", dies_after(3))
    with pytest.raises(KeyboardInterrupt):
        train_classifier(start_dir, data, tmp_path / "resumed", **options)
    assert (tmp_path / "resumed" / "checkpoint" / "state.pt").exists()
    monkeypatch.setattr("tango.training._loss", _loss)
    result = train_classifier(start_dir, data, tmp_path / "resumed", **options)
    assert result.steps == 6

    from safetensors.torch import load_file

    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.allclose(straight[k], resumed[k], atol=1e-6) for k in straight)


def test_a_run_resumes_with_another_checkpoint_interval(start_dir, tmp_path, monkeypatch, capsys):
    """How often a run saves is not what it learns: a resume may change --checkpoint-every."""
    data = sentiment_rows(96, 2)
    monkeypatch.setattr("tango.training._loss", dies_after(3))
    with pytest.raises(KeyboardInterrupt):
        train_classifier(start_dir, data, tmp_path, **{**FAST, "epochs": 1, "checkpoint_every": 2})
    monkeypatch.setattr("tango.training._loss", _loss)
    resumed = train_classifier(start_dir, data, tmp_path, **{**FAST, "epochs": 1, "checkpoint_every": 500})
    assert "from step 2 of 6" in capsys.readouterr().out  # not started again
    assert resumed.steps == 6 and not (tmp_path / "checkpoint").exists()


def test_checkpoint_from_other_settings_is_refused(start_dir, tmp_path, monkeypatch):
    data = sentiment_rows(64, 3)
    monkeypatch.setattr("tango.training._loss", dies_after(2))
    options = {**FAST, "epochs": 1, "checkpoint_every": 1}
    with pytest.raises(KeyboardInterrupt):
        train_classifier(start_dir, data, tmp_path, **options)
    monkeypatch.setattr("tango.training._loss", _loss)
    with pytest.raises(ValueError, match="other data or settings"):
        train_classifier(start_dir, data, tmp_path, **{**options, "lr": 1e-3})
    assert train_classifier(start_dir, data, tmp_path, resume=False, **options).steps == 4


def test_layers_cuts_the_encoder(start_dir, tmp_path):
    train_classifier(start_dir, sentiment_rows(32, 4), tmp_path, layers=1, **FAST)
    assert json.loads((tmp_path / "config.json").read_text())["num_hidden_layers"] == 1
    with pytest.raises(ValueError, match="has 2 layers"):
        train_classifier(start_dir, sentiment_rows(32, 4), tmp_path / "x", layers=3, **FAST)


def test_distillation_from_a_teacher(trained, start_dir, tmp_path):
    teacher, _ = trained
    result = train_classifier(
        start_dir, sentiment_rows(320, 0), tmp_path, dev=sentiment_rows(200, 1), teacher=str(teacher), **FAST
    )
    assert result.dev_accuracy > 0.8
    assert json.loads((tmp_path / "tango_train.json").read_text())["config"]["teacher"]
    wrong = LabelledData(["a", "b"], np.array([0, 1]), ["yes", "no"])
    with pytest.raises(ValueError, match="teacher"):
        train_classifier(start_dir, wrong, tmp_path / "x", teacher=str(teacher), **FAST)


def test_distillation_loss_mixes_kl_and_cross_entropy():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    labels = torch.tensor([0, 1])
    config = TrainConfig(distill_alpha=0.5, distill_temperature=2.0)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.isclose(_loss(logits, labels, None, config), ce)
    assert torch.isclose(_loss(logits, labels, logits.clone(), config), 0.5 * ce)  # KL(p||p) = 0
    assert _loss(logits, labels, -logits, config) > 0.5 * ce


def test_cli_train_with_a_seeded_dev_split(start_dir, tmp_path):
    from click.testing import CliRunner

    from tango.cli import cli

    data = sentiment_rows(400, 5)
    train_file = tmp_path / "train.tsv"
    train_file.write_text(
        "text\tlabel\n"
        + "".join(f"{text}\t{label}\n" for text, label in zip(data.texts, data.labels, strict=True))
    )
    result = CliRunner().invoke(
        cli,
        [
            "train",
            str(start_dir),
            "--train",
            str(train_file),
            "--dev-fraction",
            "0.25",
            "--labels",
            "sst2",
            "--out",
            str(tmp_path / "out"),
            "--name",
            "cli-tier",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--lr",
            "3e-3",
            "--no-bf16",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "tango_train.json").read_text())
    assert record["train_rows"] == 300 and record["dev_rows"] == 100
    assert "seeded split" in record["dev"] and record["dev_accuracy"] > 0.8
    assert registered()["cli-tier"]["metrics"]["dev_accuracy"] == record["dev_accuracy"]


# --- issue #28: distillation on unlabelled in-domain text ----------------------------------------


def _reviews(path, n: int) -> None:
    """Unlabelled reviews in IMDB's form: JSON lines of several sentences with <br /> breaks."""
    rows = sentiment_rows(2 * n, 9).texts
    with open(path, "w") as file:
        for k in range(n):
            file.write(
                json.dumps({"text": f"{rows[2 * k]}. <br /><br />{rows[2 * k + 1].capitalize()}!"}) + "\n"
            )


def test_unlabelled_rows_are_learnt_from_the_teacher(trained, start_dir, tmp_path):
    teacher, _ = trained
    _reviews(tmp_path / "reviews.jsonl", 150)
    labelled = sentiment_rows(60, 0)
    options = dict(FAST, teacher=str(teacher), unlabelled=(str(tmp_path / "reviews.jsonl"),))
    dev = sentiment_rows(200, 1)
    result = train_classifier(start_dir, labelled, tmp_path / "s", dev=dev, split_sentences=True, **options)
    record = json.loads((tmp_path / "s" / "tango_train.json").read_text())
    assert record["labelled_rows"] == 60 and 250 < record["unlabelled_rows"] <= 300  # ~two a review
    assert record["config"]["unlabelled"] and record["config"]["split_sentences"]
    alone = train_classifier(start_dir, labelled, tmp_path / "a", dev=dev, teacher=str(teacher), **FAST)
    assert result.dev_accuracy > alone.dev_accuracy + 0.05  # the teacher's answers on new text taught it
    with pytest.raises(ValueError, match="give a teacher"):
        train_classifier(start_dir, labelled, tmp_path / "x", unlabelled=options["unlabelled"], **FAST)


def test_unlabelled_rows_count_in_the_kl_term_only():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0], [0.1, 0.3]])
    labels = torch.tensor([0, 1, -1])
    config = TrainConfig(distill_alpha=0.5, distill_temperature=2.0)
    ce = torch.nn.functional.cross_entropy(logits[:2], labels[:2])
    assert torch.isclose(_loss(logits, labels, logits.clone(), config), 0.5 * ce)  # KL 0, CE on two rows
    alone = _loss(logits[2:], labels[2:], -logits[2:], config)
    assert alone > 0 and torch.isclose(
        _loss(logits[2:], labels[2:], logits[2:].clone(), config), torch.tensor(0.0)
    )


def test_the_teacher_scoring_resumes_from_its_last_saved_chunk(trained, monkeypatch, tmp_path):
    from tango import distillation

    teacher, _ = trained
    data = sentiment_rows(50, 3)
    cache = tmp_path / "teacher.npy"
    config = TrainConfig(**FAST)
    monkeypatch.setattr(distillation, "TEACHER_CHUNK", 20)
    calls, original = [], distillation.predict_logits
    settings = {"max_length": config.max_length, "batch_size": config.eval_batch_size}

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(distillation, "predict_logits", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        distillation.teacher_logits(str(teacher), data, cache, **settings)
    assert np.load(tmp_path / "teacher.partial.npy").shape == (20, 2)
    calls.clear()
    monkeypatch.setattr(distillation, "predict_logits", lambda *a, **k: calls.append(1) or original(*a, **k))
    resumed = distillation.teacher_logits(str(teacher), data, cache, **settings)
    assert len(calls) == 2 and resumed.shape == (50, 2)  # chunks 2 and 3 only
    monkeypatch.setattr(distillation, "predict_logits", original)
    cache.unlink()
    straight = distillation.teacher_logits(str(teacher), data, cache, **settings)
    np.testing.assert_allclose(resumed.numpy(), straight.numpy(), atol=1e-5)


def test_an_exported_teacher_scores_as_its_pytorch_weights_do(trained, tmp_path):
    """A teacher given as its served form (here ONNX) scores on that runtime, to the same logits."""
    from tango import distillation
    from tango.export import export_tier

    teacher, _ = trained
    export_tier(teacher, tmp_path / "onnx")
    assert not (tmp_path / "onnx" / "model.safetensors").exists()  # the form alone, no weights
    data, settings = sentiment_rows(40, 4), {"max_length": 16, "batch_size": 8}
    served = distillation.teacher_logits(str(tmp_path / "onnx"), data, tmp_path / "a.npy", **settings)
    weights = distillation.teacher_logits(str(teacher), data, tmp_path / "b.npy", **settings)
    assert served.shape == (40, 2) and served.dtype == torch.float32
    np.testing.assert_allclose(served.numpy(), weights.numpy(), atol=1e-4)


# --- issue #28: the Gatekeeper stage ------------------------------------------------------------


def test_gatekeeper_loss_is_sure_where_it_agrees_and_unsure_where_not():
    from tango.distillation import gatekeeper_loss

    teacher = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    agreeing = torch.tensor([[2.0, 0.0], [0.0, 2.0]], requires_grad=True)
    ce = torch.nn.functional.cross_entropy(agreeing, teacher.argmax(-1))
    assert torch.isclose(gatekeeper_loss(agreeing, teacher, 0.5), 0.5 * ce)
    disagreeing = torch.tensor([[0.0, 2.0]], requires_grad=True)
    value = gatekeeper_loss(disagreeing, teacher[:1], 0.5)
    value.backward()
    assert disagreeing.grad[0, 1] > 0 > disagreeing.grad[0, 0]  # pushed toward uniform
    assert torch.isclose(
        gatekeeper_loss(torch.zeros(1, 2), teacher[:1], 0.5), 0.5 * torch.log(torch.tensor(2.0))
    )


def test_the_gatekeeper_stage_lowers_confidence_where_the_tier_disagrees(trained, start_dir, tmp_path):
    from tango.tiers import Tier

    teacher, _ = trained
    rows = sentiment_rows(160, 7)
    quick = dict(FAST, epochs=1)
    plain = train_classifier(start_dir, rows, tmp_path / "plain", teacher=str(teacher), **quick)
    gated = train_classifier(
        start_dir,
        rows,
        tmp_path / "gated",
        teacher=str(teacher),
        gatekeeper=0.5,
        gatekeeper_epochs=3,
        **quick,
    )
    assert gated.steps > plain.steps
    answers = Tier.from_pretrained(teacher, precision="fp32").predict(rows.texts)

    def gap(directory):
        """Mean max-probability where the tier agrees with the teacher minus where it does not."""
        tier = Tier.from_pretrained(directory, precision="fp32")
        probabilities = tier.predict_proba(rows.texts)
        agree = tier.predict(rows.texts) == answers
        assert agree.any() and (~agree).any()
        return probabilities.max(1)[agree].mean() - probabilities.max(1)[~agree].mean()

    assert gap(tmp_path / "gated") > gap(tmp_path / "plain")
    with pytest.raises(ValueError, match="give --teacher"):
        train_classifier(start_dir, rows, tmp_path / "x", gatekeeper=0.5, **quick)
