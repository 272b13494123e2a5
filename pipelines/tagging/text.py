"""Text helpers shared by validation, segmentation and features: normalisation, content hashes, clauses.

Everything here is pure Python and cheap to import. The feature definition (:data:`TEXT_VERSION` together with
the segmenter's version, see :func:`pipelines.tagging.segment.feature_version`) changes whenever these rules
change, so a model is never served on text prepared differently from its training text.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

#: Bumped whenever clause splitting, token filtering or the character view change.
TEXT_VERSION = "clauses-v1"

#: Runs of whitespace and punctuation (CJK and ASCII) split a text into clauses; pycantonese segments each.
_CLAUSE_BREAK = re.compile(
    r"[\s\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\u2010-\u206f"
    r"!-/:-@\[-`{-~\u00a0-\u00bf\u00d7\u00f7]+"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalise(text: str | None) -> str:
    """NFC, and every line ending as ``\\n``: the same article sent twice hashes the same."""
    if not text:
        return ""
    return unicodedata.normalize("NFC", str(text)).replace("\r\n", "\n").replace("\r", "\n")


def article_text(title: str | None, body: str | None) -> str:
    """What is segmented and tagged: the title, a line break, the body."""
    title, body = normalise(title).strip(), normalise(body).strip()
    return f"{title}\n{body}" if title else body


def content_hash(title: str | None, body: str | None) -> str:
    """The article's content key (128 bits of SHA-256): segmentation is cached under it."""
    return hashlib.sha256(article_text(title, body).encode("utf-8")).hexdigest()[:32]


def has_control_characters(text: str) -> bool:
    return bool(_CONTROL.search(text))


def is_cjk(ch: str) -> bool:
    """A Chinese character (CJK unified ideographs and their extensions, compatibility ideographs)."""
    code = ord(ch)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x3134F
            or 0xF900 <= code <= 0xFAFF)


def cjk_share(text: str) -> float:
    """Chinese characters among the text's letters (punctuation, digits and spaces do not count)."""
    letters = cjk = 0
    for ch in text:
        if ch.isalpha():
            letters += 1
            cjk += is_cjk(ch)
    return cjk / letters if letters else 0.0


def clauses(text: str) -> list[str]:
    """The text's clauses: what lies between whitespace and punctuation, lower-cased (Latin words in Cantonese
    text vary in case)."""
    return [c for c in _CLAUSE_BREAK.split(text.lower()) if c]


def char_text(text: str) -> str:
    """The character view: clauses joined by single spaces (character n-grams never span a clause break)."""
    return " ".join(clauses(text))


def keep_token(token: str) -> bool:
    """Word features keep tokens with a letter or digit (no punctuation, no whitespace)."""
    return any(ch.isalnum() for ch in token)
