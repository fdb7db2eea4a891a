"""The NLTK resources preprocessing needs, and a clear error when they are missing (no network here)."""

from __future__ import annotations

import sys
from types import ModuleType

from imdb_rnn.errors import UserError

# nltk.download name -> the resource path nltk.data.find looks for.
NLTK_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "stopwords": "corpora/stopwords/english",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
}


def import_nltk() -> ModuleType:
    """`import nltk`, without the scipy and scikit-learn its package __init__ pulls in for
    collocation statistics, a transition parser and classifier wrappers we never use.

    NLTK guards those imports (they are optional to it), so while they are marked missing it
    loads without them: 0.41 s and 54 MB instead of 1.39 s and 175 MB here, most of what a
    one-review predict costs. Once it is loaded, scipy and scikit-learn import as usual.
    """
    if "nltk" in sys.modules:
        return sys.modules["nltk"]
    blocked = [name for name in ("scipy", "sklearn") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # `import scipy` raises ImportError, which NLTK catches
    try:
        import nltk
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return nltk


def missing_nltk_resources() -> list[str]:
    nltk = import_nltk()

    missing = []
    for name, resource in NLTK_RESOURCES.items():
        try:
            nltk.data.find(resource)
        except LookupError:
            missing.append(name)
    return missing


def require_nltk_resources() -> None:
    """Fail with one line naming what is missing and how to get it (no network access here)."""
    missing = missing_nltk_resources()
    if missing:
        names = ", ".join(missing)
        raise UserError(
            f"NLTK data missing: {names}; run 'imdb-rnn download' with a network, "
            "or set NLTK_DATA to a directory that holds it"
        )
