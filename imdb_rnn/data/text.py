"""Per-review text processing: normalisation (optional), NLTK tokenize, stopword removal, POS filter.

With normalisation off, the output equals the tutorial's `process_sentence`
(imdb_rnn/reference/tutorial.py) token for token; two NLTK hot spots are replaced by exact
equivalents because they dominate the run time:

* NLTK routes its tokenizer regexes through a timeout wrapper on the third-party `regex` engine;
  the same patterns compiled with the stdlib `re` give the same tokens about twice as fast.
* The averaged-perceptron tagger scores features with nested dict loops. `FastTagger` adds the
  same weight vectors in the same order (as dense float64 rows, where a missing label adds an
  exact 0.0) and breaks ties the same way (highest score, then highest label), so every score
  is bit-identical. Repeated contexts are memoised.

Both are checked against NLTK on a probe sentence when built and fall back to NLTK if they differ.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Optional

import numpy as np

from imdb_rnn.config import PreprocessConfig
from imdb_rnn.data.normalize import normalize

_PROBE = (
    "I didn't like \"The Matrix\" (1999) -- it's 2-hours long... Really?! Dr. Smith's 'idea' cost $3.88, "
    "O'Neil said: 'no way'. Isn't it WONDERFUL, e.g. the 3rd act's twist?"
)
_RE_FLAGS = re.I | re.M | re.S | re.U | re.X | re.A


def _to_re(pattern):
    try:
        return re.compile(pattern.pattern, pattern.flags & _RE_FLAGS)
    except (re.error, AttributeError, TypeError):
        return pattern


def make_word_tokenizer() -> Callable[[str], list[str]]:
    """Return a function equal to `nltk.word_tokenize` (English)."""
    from imdb_rnn.data.nltk_data import import_nltk

    nltk = import_nltk()
    from nltk.tokenize import NLTKWordTokenizer, sent_tokenize

    fast = NLTKWordTokenizer()
    try:
        for name in ("STARTING_QUOTES", "PUNCTUATION", "ENDING_QUOTES"):
            setattr(fast, name, [(_to_re(p), s) for p, s in getattr(NLTKWordTokenizer, name)])
        for name in ("PARENS_BRACKETS", "DOUBLE_DASHES"):
            p, s = getattr(NLTKWordTokenizer, name)
            setattr(fast, name, (_to_re(p), s))
    except (AttributeError, TypeError, ValueError):
        return nltk.word_tokenize

    def tokenize(text: str) -> list[str]:
        return [tok for sent in sent_tokenize(text) for tok in fast.tokenize(sent)]

    return tokenize if tokenize(_PROBE) == nltk.word_tokenize(_PROBE) else nltk.word_tokenize


class FastTagger:
    """Exact, faster `PerceptronTagger.tag` (see module docstring)."""

    MEMO_LIMIT = 500_000  # entries; the memo is cleared when full so memory stays bounded

    def __init__(self, tagger) -> None:
        self._tagdict = tagger.tagdict
        self._weights = tagger.model.weights
        self._classes = sorted(tagger.model.classes)
        self._index = {c: i for i, c in enumerate(self._classes)}
        self._normalize = tagger.normalize
        self._start = list(tagger.START)
        self._end = list(tagger.END)
        self._norm: dict[str, str] = {}
        self._rows: dict[str, Optional[np.ndarray]] = {}
        self._memo: dict[tuple, str] = {}

    def _row(self, feature: str) -> Optional[np.ndarray]:
        row = self._rows.get(feature, False)
        if row is False:
            weights = self._weights.get(feature)
            if weights is None:
                row = None
            else:
                row = np.zeros(len(self._classes))
                for label, w in weights.items():
                    row[self._index[label]] = w
            self._rows[feature] = row
        return row

    def _predict(self, word: str, c: list[str], i: int, prev: str, prev2: str) -> str:
        # Same features, same order as PerceptronTagger._get_features (all distinct, value 1).
        features = (
            "bias",
            "i suffix " + word[-3:],
            "i pref1 " + (word[0] if word else ""),
            "i-1 tag " + prev,
            "i-2 tag " + prev2,
            "i tag+i-2 tag " + prev + " " + prev2,
            "i word " + c[i],
            "i-1 tag+i word " + prev + " " + c[i],
            "i-1 word " + c[i - 1],
            "i-1 suffix " + c[i - 1][-3:],
            "i-2 word " + c[i - 2],
            "i+1 word " + c[i + 1],
            "i+1 suffix " + c[i + 1][-3:],
            "i+2 word " + c[i + 2],
        )
        scores = None
        for feature in features:
            row = self._row(feature)
            if row is not None:
                if scores is None:
                    scores = row.copy()
                else:
                    scores += row
        if scores is None:
            return self._classes[-1]
        best = np.flatnonzero(scores == scores.max())
        return self._classes[best[-1]]

    def tag(self, tokens: list[str]) -> list[tuple[str, str]]:
        norm = self._norm
        context = list(self._start)
        for w in tokens:
            n = norm.get(w)
            if n is None:
                n = norm[w] = self._normalize(w)
            context.append(n)
        context += self._end
        if len(self._memo) > self.MEMO_LIMIT:
            self._memo.clear()
        prev, prev2 = self._start
        out = []
        offset = len(self._start)
        for i, word in enumerate(tokens):
            tag = self._tagdict.get(word)
            if not tag:
                j = i + offset
                key = (word[-3:], word[:1], prev, prev2, context[j - 2], context[j - 1], context[j], context[j + 1], context[j + 2])
                tag = self._memo.get(key)
                if tag is None:
                    tag = self._memo[key] = self._predict(word, context, j, prev, prev2)
            out.append((word, tag))
            prev2, prev = prev, tag
        return out


def make_tagger() -> Callable[[list[str]], list[tuple[str, str]]]:
    """Return a function equal to `nltk.pos_tag` (English, Penn Treebank tags)."""
    from imdb_rnn.data.nltk_data import import_nltk

    nltk = import_nltk()
    from nltk.tag import _get_tagger

    try:
        fast = FastTagger(_get_tagger("eng"))
        probe = nltk.word_tokenize(_PROBE)
        if fast.tag(probe) == nltk.pos_tag(probe):
            return fast.tag
    except (AttributeError, TypeError, KeyError):
        pass
    return nltk.pos_tag


class ReviewProcessor:
    """Turn one raw review into the list of tokens the model sees, per the preprocess config."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        from nltk.corpus import stopwords

        self.cfg = cfg
        self.tokenize = make_word_tokenizer()
        self.tag = make_tagger() if cfg.pos_prefixes is not None else None
        keep = {w.lower() if cfg.lowercase else w for w in cfg.keep_words}
        words = stopwords.words("english") if cfg.remove_stopwords else []
        self.stopwords = frozenset(w for w in words if w not in keep)
        self.prefixes = tuple(cfg.pos_prefixes or ())

    def clean(self, text: str) -> str:
        """The text the tokenizer sees: normalised when preprocess.normalize is on."""
        return normalize(text) if self.cfg.normalize else text

    def __call__(self, text: str) -> list[str]:
        """The tokens kept from `text`; raises TimeoutError when NLTK gives up on it."""
        return self._tokens(self.clean(text))

    def _tokens(self, text: str) -> list[str]:
        tokens = self.tokenize(text)
        if self.stopwords:
            if self.cfg.lowercase:  # with lowercasing, "The" is a stopword as much as "the"
                tokens = [t for t in tokens if t.lower() not in self.stopwords]
            else:
                tokens = [t for t in tokens if t not in self.stopwords]
        if self.tag is not None:
            tokens = [w for w, tag in self.tag(tokens) if tag.startswith(self.prefixes)]
        if self.cfg.lowercase:
            tokens = [t.lower() for t in tokens]
        return tokens

    def try_process(self, text: str) -> Optional[list[str]]:
        """The tokens kept from `text`, or None when NLTK gives up on it: its regular expressions
        stop after a time limit (nltk.redos, 5 s) on pathological input such as "a. " * 1_000_000."""
        return self.process_with_key(text)[0]

    def process_with_key(self, text: str) -> tuple[Optional[list[str]], bytes]:
        """(`try_process(text)`, a 16-byte digest of the cleaned text): the digest is what the
        exact-duplicate counts compare, computed here so the text is normalised once."""
        clean = self.clean(text)
        key = hashlib.blake2b(clean.strip().encode(), digest_size=16).digest()
        try:
            return self._tokens(clean), key
        except (TimeoutError, RecursionError):
            return None, key
