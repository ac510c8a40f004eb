"""Held-out rows by whole groups (issue #27): a sentence leaves training with every phrase of it,
so held-out full sentences are new text, like a dev set."""

import json

import numpy as np
from click.testing import CliRunner

from tango.cli import cli
from tango.data import load_labelled
from tango.splits import (
    CONTAINMENT,
    HeldOutRows,
    carve_calibration_rows,
    containment_groups,
    held_out_by_group,
    held_out_rows,
    text_overlap,
)

SENTENCES = [
    "the film is a gorgeous witty seductive movie",
    "the plot is nothing but a string of cliches",
    "a dull lifeless mess from start to finish",
    "it is not a bad film but not a good one",
    "one of the best films of the year",
    "the acting is worse than the plot",
]


def phrase_file(path, copies=40):
    """A file like SST-2's: every sentence (made unique per copy) with some of its phrases."""
    rows = ["sentence\tlabel"]
    for k in range(copies):
        for i, sentence in enumerate(SENTENCES):
            words = f"{sentence} take {k:03d}".split()  # fixed width: no take inside another
            rows.append(f"{' '.join(words)}\t{i % 2}")
            rows += [f"{' '.join(words[a:b])}\t{i % 2}" for a, b in ((0, 3), (2, 5), (1, len(words)))]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_phrase_joins_the_longest_row_it_lies_inside():
    texts = ["a b c d", "b c", "x b c y z w", "c d", "q"]
    groups = containment_groups(texts)
    assert groups.tolist() == [0, 2, 2, 0, 4]  # "b c" is in both: the longer row owns it
    assert containment_groups(["Good film", "good"]).tolist() == [0, 0]  # words, case aside
    assert containment_groups(["bad", "a badly made film"]).tolist() == [0, 1]  # words, not letters


def test_whole_groups_are_held_out_until_the_rows_asked_for():
    groups = np.repeat(np.arange(50), 4)
    held = held_out_by_group(groups, 30, seed=1)
    assert len(held) == 32 and all(np.isin(groups[groups == g], groups[held]).all() for g in groups[held])
    assert np.array_equal(held, held_out_by_group(groups, 30, seed=1))  # seeded: found again


def test_no_held_out_row_lies_inside_a_training_row(tmp_path):
    path = phrase_file(tmp_path / "train.tsv")
    data = load_labelled(path, label_names=["negative", "positive"])
    columns = {"text_column": None, "text_pair_column": None, "label_column": None}
    plain_train, plain = carve_calibration_rows(data, path, 200, 0, columns)
    train, held = carve_calibration_rows(data, path, 200, 0, columns, groups=CONTAINMENT)
    calibration = held.load(["negative", "positive"])
    assert held.groups == CONTAINMENT and held.held >= 200 and len(train) == len(data) - held.held
    assert len(calibration) == held.group_count  # the held-out full sentences
    assert all(len(text.split()) == 9 or "take" in text for text in calibration.texts)
    assert text_overlap(calibration, train) == 0.0  # new text
    assert text_overlap(plain.load(["negative", "positive"]), plain_train) > 0.5  # phrases of trained rows
    assert HeldOutRows(**json.loads(json.dumps(held.to_dict()))) == held


def test_tango_train_records_the_groups_and_calibrate_finds_the_rows_again(tmp_path):
    path = phrase_file(tmp_path / "train.tsv")
    out = tmp_path / "linear"
    args = ["train", "linear", "--train", str(path), "--labels", "sst2", "--out", str(out)]
    result = CliRunner().invoke(cli, args + ["--calibration-rows", "300", "--group-column", "containment"])
    assert result.exit_code == 0, result.output
    assert "whole groups by containment" in result.output and "warning" not in result.output
    record = json.loads((out / "tango_train.json").read_text())["calibration_rows"]
    assert record["groups"] == "containment" and record["held"] >= 300
    assert len(held_out_rows(out).load(["negative", "positive"])) == record["group_count"]


def test_a_group_column_keeps_its_rows_together(tmp_path):
    rows = ["text\tlabel\tdoc"] + [f"row {i} of doc {i // 5}\t{i % 2}\td{i // 5}" for i in range(400)]
    (tmp_path / "t.tsv").write_text("\n".join(rows) + "\n")
    data = load_labelled(tmp_path / "t.tsv")
    columns = {"text_column": "text", "text_pair_column": None, "label_column": "label"}
    train, held = carve_calibration_rows(data, tmp_path / "t.tsv", 52, 3, columns, groups="doc")
    docs = {text.split()[-1] for text in held.load().texts}
    assert held.held == 55 == len(held.load().texts) and len(docs) == 11  # 11 whole documents of 5 rows
    assert not docs & {text.split()[-1] for text in train.texts}
