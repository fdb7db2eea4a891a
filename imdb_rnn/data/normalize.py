"""Text normalisation, the pipeline's optional first step (preprocess.normalize).

Reviews come with HTML (`<br /><br />` in most IMDB reviews, entities such as `&amp;`) and with the
typographic characters phones and word processors type (’ “ ” – —). Left alone, `<br />` becomes
four tokens and hides sentence ends from the sentence splitter (`film.` sticks together), and
`wasn’t` splits into `wasn`, `’`, `t`, so the negation that `n't` carries is lost.
"""

from __future__ import annotations

import html
import re
import unicodedata

_LINE_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_SPACE = re.compile(r"\s+")
# After NFKC: what it leaves typographic, mapped to the ASCII that NLTK's tokenizer knows.
_ASCII = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "\u0060": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": " - ", "\u2015": " - ", "\u2212": "-",
    "\u00ad": None,  # soft hyphen: invisible, and splits a word for the tokenizer
})


def normalize(text: str) -> str:
    """HTML line breaks to sentence breaks, other tags removed, entities decoded (the standard
    `html` module), Unicode NFKC, typographic quotes, apostrophes and dashes to ASCII, whitespace
    (including U+0085 and U+2028) collapsed to single spaces."""
    text = _LINE_BREAK.sub("\n", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text).translate(_ASCII)
    return _SPACE.sub(" ", text).strip()
