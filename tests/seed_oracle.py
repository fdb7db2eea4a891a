"""The seed's preprocessing, written as the seed wrote it: the oracle our pipeline must equal."""

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
