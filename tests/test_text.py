"""Preprocessing equals the tutorial's process_sentence, the fast NLTK paths equal NLTK, and normalisation."""

import nltk
import pytest

from imdb_rnn.config import PreprocessConfig
from imdb_rnn.data.preprocess import tokenize_reviews
from imdb_rnn.data.text import ReviewProcessor, make_tagger, make_word_tokenizer
from imdb_rnn.reference.tutorial import process_sentence


def test_processor_equals_tutorial_on_200_real_reviews(sample_reviews):
    reviews = sample_reviews[::2]  # 200 reviews, both splits and classes
    assert len(reviews) == 200
    proc = ReviewProcessor(PreprocessConfig())  # the defaults are the tutorial's filters
    for r in reviews:
        assert " ".join(proc(r.text)) == process_sentence(r.text), r.id


def test_workers_give_the_tutorial_output_too(sample_reviews):
    reviews = sample_reviews[1::8]
    tokens = tokenize_reviews(reviews, PreprocessConfig(), workers=2, show_progress=False)
    assert [" ".join(t) for t in tokens] == [process_sentence(r.text) for r in reviews]


def test_fast_tokenizer_equals_word_tokenize(all_reviews):
    tokenize = make_word_tokenizer()
    assert tokenize is not nltk.word_tokenize, "the fast path fell back to NLTK"
    for r in all_reviews[::25]:  # 2,000 reviews
        assert tokenize(r.text) == nltk.word_tokenize(r.text), r.id


def test_fast_tagger_equals_pos_tag(all_reviews):
    tag = make_tagger()
    assert tag is not nltk.pos_tag, "the fast path fell back to NLTK"
    for r in all_reviews[7::100]:  # 500 reviews, every token (no stopword removal)
        tokens = nltk.word_tokenize(r.text)
        assert tag(tokens) == nltk.pos_tag(tokens), r.id


def test_fast_tagger_sees_a_changed_weight():
    """The equality above can fail: perturb one weight and the fast tagger must follow it."""
    from nltk.tag import PerceptronTagger

    from imdb_rnn.data.text import FastTagger

    base = PerceptronTagger()
    tokens = nltk.word_tokenize("The director's vision was bold, the acting wooden.")
    before = FastTagger(base).tag(tokens)
    base.model.weights["bias"] = {**base.model.weights["bias"], "UH": 1e6}
    after = FastTagger(base).tag(tokens)
    assert after != before
    assert after == base.tag(tokens)


@pytest.mark.parametrize(
    "cfg, text, expected",
    [
        (PreprocessConfig(pos_prefixes=None), "This movie is not good at all.", ["This", "movie", "good", "."]),
        (PreprocessConfig(pos_prefixes=None, keep_words=["not"]), "This movie is not good.", ["This", "movie", "not", "good", "."]),
        (PreprocessConfig(pos_prefixes=None, lowercase=True), "This movie is GOOD.", ["movie", "good", "."]),
        (PreprocessConfig(pos_prefixes=None, remove_stopwords=False), "It is good.", ["It", "is", "good", "."]),
        (PreprocessConfig(pos_prefixes=["JJ"]), "A wonderful, moving film.", ["wonderful"]),
    ],
)
def test_filter_options(cfg, text, expected):
    assert ReviewProcessor(cfg)(text) == expected


def quick_preprocess(**changes):
    from pathlib import Path

    from imdb_rnn.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "quick.yaml").preprocess
    return cfg.model_copy(update=changes)


def test_normalize_maps_typography_html_entities_and_unicode_forms():
    from imdb_rnn.data.normalize import normalize

    assert normalize("It wasn\u2019t \u201cgood\u201d \u2013 at all\u2026") == "It wasn't \"good\" - at all..."
    assert normalize("Great film.<br /><br />The end &amp; <i>more</i>") == "Great film. The end & more"
    assert normalize("a\u0085b\u2028c\u00a0d  \t e") == "a b c d e"  # NEL, line separator, no-break space
    assert normalize("\ufb01ne \uff21") == "fine A"  # NFKC: ligature, full-width letter
    assert normalize("x < y and y > z") == "x < y and y > z"  # comparisons are not tags


def test_typographic_apostrophe_keeps_the_negation():
    sentence = "This movie wasn\u2019t good at all."
    on, off = ReviewProcessor(quick_preprocess()), ReviewProcessor(quick_preprocess(normalize=False))
    assert on(sentence) == on("This movie wasn't good at all.") and "n't" in on(sentence)
    assert "n't" not in off(sentence)  # the case that failed before normalisation


def test_html_leaves_no_tokens_and_frees_sentence_ends(sample_reviews):
    reviews = [r.text for r in sample_reviews[::4] if "<br" in r.text]
    assert len(reviews) > 30
    html_tokens = {"<", ">", "br", "/", "/>"}
    on, off = ReviewProcessor(quick_preprocess()), ReviewProcessor(quick_preprocess(normalize=False))
    stuck = lambda tokens: sum(1 for t in tokens if len(t) > 2 and t.endswith(".") and t[:-1].isalpha())  # noqa: E731
    raw = [off(t) for t in reviews]
    clean = [on(t) for t in reviews]
    assert sum(t in html_tokens for ts in raw for t in ts) > 100  # the fault: <br /> became tokens
    assert not any(t in html_tokens for ts in clean for t in ts)
    assert sum(map(stuck, raw)) > 20 and sum(map(stuck, clean)) < sum(map(stuck, raw)) / 5


def test_a_review_nltk_gives_up_on_is_none_not_a_crash():
    proc = ReviewProcessor(quick_preprocess())
    assert proc.try_process("a. " * 1_000_000) is None
    assert proc.try_process("A fine film.") == ["a", "fine", "film", "."]
