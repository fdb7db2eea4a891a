"""The tutorial's preprocessing, written as the tutorial wrote it: the oracle that
`imdb_rnn.data.text.ReviewProcessor` must equal token for token (tests and bench/preprocess.py).
It is slow on purpose: stopwords.words() is re-read for every word."""

import nltk
from nltk.corpus import stopwords


def process_sentence(sentence: str) -> str:
    nouns = []
    words = nltk.word_tokenize(sentence)
    words = [w for w in words if w not in stopwords.words("english")]
    for word, tag in nltk.pos_tag(words):
        if tag.startswith("NN"):
            nouns.append(word)
    return " ".join(nouns)
