"""The NLTK resources preprocessing needs, and a clear error when they are missing (no network here)."""

from __future__ import annotations

from imdb_rnn.errors import UserError

# nltk.download name -> the resource path nltk.data.find looks for.
NLTK_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "stopwords": "corpora/stopwords/english",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
}


def missing_nltk_resources() -> list[str]:
    import nltk

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
