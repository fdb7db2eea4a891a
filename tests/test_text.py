"""Preprocessing equals the seed's process_sentence, and the fast NLTK paths equal NLTK."""

import nltk
import pytest

from imdb_rnn.config import PreprocessConfig
from imdb_rnn.data.preprocess import tokenize_reviews
from imdb_rnn.data.text import ReviewProcessor, make_tagger, make_word_tokenizer
from imdb_rnn.reference.tutorial import process_sentence


def test_processor_equals_seed_on_200_real_reviews(sample_reviews):
    reviews = sample_reviews[::2]  # 200 reviews, both splits and classes
    assert len(reviews) == 200
    proc = ReviewProcessor(PreprocessConfig())  # the defaults are the seed's filters
    for r in reviews:
        assert " ".join(proc(r.text)) == process_sentence(r.text), r.id


def test_workers_give_the_seed_output_too(sample_reviews):
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
