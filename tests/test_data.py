"""Readers: every row comes back as a Record or a RowError with its line number."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from tango.data import (
    Record,
    RowError,
    guess_columns,
    load_labelled,
    read_records,
    split_rows,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_tsv_strips_text_and_counts_lines_from_the_header(tmp_path):
    path = write(tmp_path, "sst.tsv", "sentence\tlabel\na fine film \t1\n\ndull \t0\n")
    assert list(read_records(path, "sentence", label_column="label")) == [
        Record(2, None, "a fine film", "1"),
        Record(4, None, "dull", "0"),
    ]


def test_tsv_unquotes_whole_fields_and_keeps_stray_quotes(tmp_path):
    path = write(tmp_path, "pairs.tsv", 'index\ta\tb\n7\t"He said "" hi "" ."\t"Hi" she said\n')
    (record,) = read_records(path, "a", "b", id_column="index")
    assert record.text == ('He said " hi " .', '"Hi" she said')
    assert record.id == "7"


def test_bad_rows_are_reported_with_line_and_reason(tmp_path):
    content = b"text\tlabel\nok\t1\ntoo\tmany\tfields\n\t0\nbad \xff byte\t1\nlast\t0\n"
    items = list(read_records(write(tmp_path, "x.tsv", content), "text", label_column="label"))
    assert [type(item).__name__ for item in items] == ["Record", "RowError", "RowError", "RowError", "Record"]
    assert [(e.line, e.message) for e in items if isinstance(e, RowError)] == [
        (3, "expected 2 fields, found 3"),
        (4, "empty text"),
        (5, "not UTF-8"),
    ]
    assert items[2].field == "text"
    assert "\ufffd" in items[3].raw


def test_csv_quoted_field_may_span_lines(tmp_path):
    path = write(tmp_path, "x.csv", 'id,text\n1,"two\nlines, one row"\n2,plain\n')
    items = list(read_records(path, "text", id_column="id"))
    assert items == [Record(2, "1", "two\nlines, one row", None), Record(4, "2", "plain", None)]


def test_malformed_csv_row_is_reported_and_reading_goes_on(tmp_path):
    path = write(tmp_path, "x.csv", 'text,label\nfine,1\n"bro"ken,0\nlast,1\n')
    items = list(read_records(path, "text", label_column="label"))
    assert [type(i).__name__ for i in items] == ["Record", "RowError", "Record"]
    assert items[1].line == 3 and items[1].message.startswith("malformed CSV")
    assert items[2] == Record(4, None, "last", "1")


def test_jsonl_reports_malformed_lines_and_missing_fields(tmp_path):
    path = write(tmp_path, "x.jsonl", '{"text": "good", "label": 1}\n{oops\n\n{"label": 0}\n[1]\n')
    items = list(read_records(path, "text", label_column="label"))
    assert items[0] == Record(1, None, "good", "1")
    assert [(e.line, e.field, e.message[:14]) for e in items[1:]] == [
        (2, None, "malformed JSON"),
        (4, "text", "missing field"),
        (5, None, "expected a JSO"),
    ]


def test_missing_column_raises_before_reading_rows(tmp_path):
    path = write(tmp_path, "x.tsv", "sentence\tlabel\na\t1\n")
    with pytest.raises(ValueError, match=r"no column 'text'.*'sentence', 'label'"):
        read_records(path, "text")
    jsonl = write(tmp_path, "x.jsonl", 'not json\n{"review": "a"}\n')
    with pytest.raises(ValueError, match=r"x.jsonl.*no column 'text'.*'review'"):
        read_records(jsonl, "text")


def test_skip_lines_resumes_after_that_many_rows(tmp_path):
    path = write(tmp_path, "x.csv", "text\na\nb\nc\n")
    assert [r.text for r in read_records(path, "text", skip_lines=2)] == ["c"]


def test_stdin_needs_a_format(tmp_path, monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(b'{"text": "from stdin"}\n'))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert [r.text for r in read_records("-", "text", format="jsonl")] == ["from stdin"]
    with pytest.raises(ValueError, match="format"):
        read_records("-", "text")


def test_load_labelled_guesses_columns_and_maps_names(tmp_path):
    path = write(tmp_path, "x.tsv", "premise\thypothesis\tlabel\np\th\tneutral\nq\ti\tentailment\n")
    data = load_labelled(path)
    assert data.texts == [("p", "h"), ("q", "i")]
    assert data.label_names == ["entailment", "neutral"]
    assert data.labels.tolist() == [1, 0]
    ids = load_labelled(
        write(tmp_path, "y.tsv", "text\tlabel\na\t1\nb\t0\n"), label_names=["negative", "positive"]
    )
    assert ids.labels.tolist() == [1, 0] and ids.label_names == ["negative", "positive"]


@pytest.mark.parametrize(
    "header, guessed",
    [
        ("id,sentence1,sentence2,label", ("sentence1", "sentence2", "label")),
        ("question,sentence,label", ("question", "sentence", "label")),
        ("review,stars", ("review", None, None)),
        ("body,label", ("text", None, "label")),
    ],
)
def test_scoring_and_training_guess_the_same_columns(tmp_path, header, guessed):
    """`tango run` (label=False) guesses what `tango train` accepts, pairs included."""
    path = write(tmp_path, "x.csv", header + "\n" + ",".join("a" * len(header.split(","))) + "\n")
    assert guess_columns(path, label=False) == (*guessed[:2], None)
    if guessed[0] != "text" and guessed[2]:
        assert guess_columns(path) == guessed
    elif guessed[2] is None:
        with pytest.raises(ValueError, match="cannot guess the text and label columns"):
            guess_columns(path)
    assert guess_columns("-", label=False) == ("text", None, None)  # stdin cannot be peeked at


def test_load_labelled_lists_bad_lines(tmp_path):
    path = write(tmp_path, "x.tsv", "text\tlabel\na\t1\n\t0\nb\n")
    with pytest.raises(ValueError, match="2 bad row.*line 3: empty text; line 4: expected 2"):
        load_labelled(path)
    with pytest.raises(ValueError, match=r"labels \['maybe'\] are not among the labels"):
        load_labelled(write(tmp_path, "y.tsv", "text\tlabel\na\tmaybe\n"), label_names=["no", "yes"])


def test_split_rows_is_seeded_and_disjoint():
    train, dev = split_rows(100, 0.1, seed=3)
    assert len(dev) == 10 and len(np.intersect1d(train, dev)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, dev])), np.arange(100))
    assert np.array_equal(dev, split_rows(100, 0.1, seed=3)[1])
    assert not np.array_equal(dev, split_rows(100, 0.1, seed=4)[1])


SHARED_FILES = {
    "sst2/train.tsv": 67349,
    "sst2/dev.tsv": 872,
    "ag_news/train_10k.tsv": 10001,
    "snli/validation.tsv": 9842,
    "snli/test.tsv": 9824,
    "mrpc/train.tsv": 3668,
    "mrpc/validation.tsv": 408,
    "mrpc/test.tsv": 1725,
    "qnli/dev.tsv": 5463,
    "imdb/train.jsonl": 25000,
}


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is absent")
@pytest.mark.parametrize("name, rows", SHARED_FILES.items())
def test_shared_files_parse_with_their_documented_row_counts(name, rows):
    assert len(load_labelled(SHARED / name)) == rows  # columns guessed, no bad row
