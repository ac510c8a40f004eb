"""Sentences out of long texts: the unlabelled in-domain rows a tier 1 is distilled on.

SST-2's rows are movie-review sentences; IMDB's reviews are paragraphs of them, with ``<br />``
line breaks. :func:`split_sentences` cuts a review into sentences by a small rule, tested on the
cases reviews have (abbreviations, initials, decimals, ellipses, quotes and brackets after the
stop, several stops in a row), rather than a library that needs data downloaded at run time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["clean_text", "sentences_of", "split_sentences"]

_BREAKS = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
# A stop ([.!?]+, then closing quotes or brackets), then white space, then what starts a sentence.
_BOUNDARY = re.compile(r"(?<=[.!?])([\"')\]]*)\s+(?=[\"'(\[]*[A-Z0-9])")
# Words after which a full stop does not end a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "vol",
    "mt", "ft", "lt", "col", "gen", "sgt", "capt", "rev", "inc", "ltd", "co", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}  # fmt: skip


def clean_text(text: str) -> str:
    """HTML line breaks to spaces, runs of white space to one space, ends stripped."""
    return _SPACES.sub(" ", _BREAKS.sub(" ", text)).strip()


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (cleaned first), in order; never an empty one."""
    text = clean_text(text)
    if not text:
        return []
    pieces, start = [], 0
    for match in _BOUNDARY.finditer(text):
        end = match.end(1)  # keep the closing quotes or brackets with the sentence
        if _ends_in_abbreviation(text[start:end]):
            continue
        pieces.append(text[start:end].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [piece for piece in pieces if piece]


def _ends_in_abbreviation(sentence: str) -> bool:
    """A stop after an abbreviation or an initial (``Mr.``, ``J.``) does not end a sentence."""
    stripped = sentence.rstrip("\"')]")
    if not stripped.endswith("."):
        return False
    last = stripped[:-1].rsplit(" ", 1)[-1].lstrip("\"'([").lower()
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def sentences_of(texts: Iterable[str], min_words: int = 1) -> Iterator[str]:
    """Every sentence of every text, with at least ``min_words`` words."""
    for text in texts:
        for sentence in split_sentences(text):
            if len(sentence.split()) >= min_words:
                yield sentence
