"""A long CSV field is read, not dropped, and csv's process-wide field limit is the process's
own again once tango's readers are done (issue #30: no global state left behind)."""

import csv

from tango.data import read_records
from tango.formats import CSV_FIELD_LIMIT


def test_a_long_field_is_read_and_the_limit_is_given_back(tmp_path):
    long_text = "a fine film " * 20_000  # 240,000 characters: over csv's default 131,072
    path = tmp_path / "long.csv"
    path.write_text(f'text,label\n"{long_text}",positive\nshort one,negative\n')
    before = csv.field_size_limit()
    assert before < CSV_FIELD_LIMIT
    records = read_records(str(path), "text", label_column="label")
    first = next(iter(records))
    assert csv.field_size_limit() == CSV_FIELD_LIMIT  # raised while a reader is running
    rest = list(records)
    assert first.text == long_text.strip() and len(rest) == 1  # nothing dropped as malformed
    assert csv.field_size_limit() == before  # and given back when it ends
