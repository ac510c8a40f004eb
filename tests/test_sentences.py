"""The sentence splitter that turns reviews into unlabelled SST-2-like rows."""

import pytest

from tango.sentences import clean_text, sentences_of, split_sentences


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A fine film. I loved it!", ["A fine film.", "I loved it!"]),
        ("Great.<br /><br />Really great.", ["Great.", "Really great."]),
        ("Mr. Smith was good. Dr. Who was not.", ["Mr. Smith was good.", "Dr. Who was not."]),
        (
            "J. R. R. Tolkien wrote it. Then came the film.",
            ["J. R. R. Tolkien wrote it.", "Then came the film."],
        ),
        ("It costs 3.5 million. Worth it?", ["It costs 3.5 million.", "Worth it?"]),
        ('He said "Run!" Then he ran.', ['He said "Run!"', "Then he ran."]),
        ("Wait... What? No!! Yes.", ["Wait...", "What?", "No!!", "Yes."]),
        ("it starts lower case. and goes on", ["it starts lower case. and goes on"]),
        ("(A bracket.) Then 2 more.", ["(A bracket.)", "Then 2 more."]),
        ("   ", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_clean_text_and_the_word_floor():
    assert clean_text("a<BR/>b <br>  c\n\td") == "a b c d"
    assert list(sentences_of(["Yes. A longer one here.", "No."], min_words=2)) == ["A longer one here."]
