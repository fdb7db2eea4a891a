"""The NBSVM branch: binary n-grams scaled by their naive Bayes log-count ratio, then a linear classifier.

Wang & Manning 2012, "Baselines and Bigrams: Simple, Good Sentiment and Topic Classification",
section 2: features x = 1[f > 0] over an n-gram vocabulary, ratio r = log((p / |p|_1) / (q / |q|_1))
with p = alpha + sum of x over positive reviews and q the same over negative ones, and a linear
model on r * x. The linear model here is scikit-learn's L2-regularised logistic regression
(liblinear), as in Mesnil et al.'s reference implementation (2014): on the official split, with
best.yaml's tokens and uni- to trigrams in at least 2 reviews, it scored 91.86 % here, against
91.16 % for the paper's SVM with interpolation (beta = 0.25) on the same features (the paper
reports 91.22 % for NBSVM with bigrams).

Its input is a review's kept tokens from the run's text pipeline (the `preprocess` section),
space-joined and never cut to `max_len`. The fitted branch is stored as plain files, no pickle:
`nbsvm.npz` (ratio, coefficients, intercept, and the validation margins that stacking is fitted
on) and `nbsvm-ngrams.json` (the n-gram of each column).
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from imdb_rnn.config import NBSVMConfig
from imdb_rnn.errors import UserError
from imdb_rnn.files import atomic_path, write_text

ARRAYS, NGRAMS = "nbsvm.npz", "nbsvm-ngrams.json"


def check_two_classes(label_names: Sequence[str]) -> None:
    """Raise UserError unless there are two classes: the log-count ratio contrasts label 1 with label 0."""
    if len(label_names) != 2:
        raise UserError(f"nbsvm is a two-class model (Wang & Manning 2012) and this data has {len(label_names)} "
                        f"classes ({', '.join(map(str, label_names))}); set nbsvm: null in the config, or pass nbsvm=null")


def _vectorizer(order: int, min_df: int = 1, vocabulary: dict[str, int] | None = None):
    """Binary n-gram counts `(N, F)` of space-joined tokens (the pipeline already tokenized them)."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False, ngram_range=(1, order),
                           binary=True, min_df=min_df, vocabulary=vocabulary, dtype=np.float32)


def log_count_ratio(x, labels: np.ndarray, alpha: float) -> np.ndarray:
    """r `(F,)`: log((p / |p|_1) / (q / |q|_1)), p = alpha + x's column sums over label 1, q over label 0.

    x: binary features `(N, F)` (sparse or dense); labels `(N,)` of 0 and 1.
    """
    labels = np.asarray(labels)
    p = alpha + np.asarray(x[labels == 1].sum(0)).ravel()
    q = alpha + np.asarray(x[labels == 0].sum(0)).ravel()
    return (np.log(p / p.sum()) - np.log(q / q.sum())).astype(np.float32)


@dataclass
class NBSVM:
    """A fitted branch: `decision_function(texts)` gives each review's margin (log-odds of label 1)."""

    ngrams: list[str] = field(repr=False)  # the n-gram of each feature column
    ratio: np.ndarray = field(repr=False)  # (F,) float32 naive Bayes log-count ratio r
    coef: np.ndarray = field(repr=False)  # (F,) float32 weights of the classifier on r * x
    intercept: float
    order: int
    fit_seconds: float = 0.0  # wall seconds to vectorize and fit (both fits with a refit)
    # (N_val,) float64: the validation reviews' margins from a fit that did not see them (with
    # nbsvm.refit, not this fit's); stacking is fitted on them. None before training sets them.
    val_margins: np.ndarray | None = field(default=None, repr=False)
    # Built on first use: r * w, and the vectorizer over the stored n-grams.
    _weights: np.ndarray | None = field(default=None, init=False, repr=False)
    _vec: object | None = field(default=None, init=False, repr=False)

    def features(self, texts: Sequence[str]):
        """Binary n-gram matrix `(N, F)` (scipy CSR) of space-joined token strings."""
        if self._vec is None:
            self._vec = _vectorizer(self.order, vocabulary={g: i for i, g in enumerate(self.ngrams)})
        return self._vec.transform(texts)

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Margins `(N,)` float64: w . (r * x) + b; positive means label 1."""
        if self._weights is None:
            self._weights = (self.ratio.astype(np.float64) * self.coef)
        return self.features(texts) @ self._weights + self.intercept

    def save(self, directory: Path) -> None:
        """nbsvm.npz and nbsvm-ngrams.json in `directory` (each written under a temporary name first)."""
        with atomic_path(Path(directory) / ARRAYS) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, ratio=self.ratio, coef=self.coef, intercept=np.float64(self.intercept),
                         order=np.int64(self.order), fit_seconds=np.float64(self.fit_seconds),
                         **({"val_margins": self.val_margins} if self.val_margins is not None else {}))
        write_text(Path(directory) / NGRAMS, json.dumps(self.ngrams, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> "NBSVM":
        """Read what `save` wrote (no pickle). Raises UserError for missing, corrupt or mismatched files."""
        directory = Path(directory)
        try:
            with np.load(directory / ARRAYS, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("ratio", "coef", "intercept", "order", "fit_seconds")}
                val_margins = z["val_margins"] if "val_margins" in z else None
            ngrams = json.loads((directory / NGRAMS).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise UserError(f"the NBSVM branch in {directory} ({ARRAYS}, {NGRAMS}) is missing or unreadable ({e}); "
                            "restore the run's files or retrain") from e
        if not (isinstance(ngrams, list) and len(ngrams) == len(arrays["ratio"]) == len(arrays["coef"])):
            raise UserError(f"{directory / NGRAMS} does not match {directory / ARRAYS} (corrupt?); restore the "
                            "run's files or retrain")
        return cls(ngrams, arrays["ratio"], arrays["coef"], float(arrays["intercept"]), int(arrays["order"]),
                   float(arrays["fit_seconds"]), val_margins)


def fit_nbsvm(texts: Sequence[str], labels: np.ndarray, cfg: NBSVMConfig) -> NBSVM:
    """Fit on space-joined token strings `texts` (N) and labels `(N,)` of 0 and 1.

    Raises UserError when no n-gram occurs in `cfg.min_df` reviews (lower nbsvm.min_df).
    """
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    vec = _vectorizer(cfg.order, cfg.min_df)
    try:
        x = vec.fit_transform(texts)
    except ValueError as e:  # sklearn: "After pruning, no terms remain" / "empty vocabulary"
        raise UserError(f"the NBSVM branch has no n-gram in at least nbsvm.min_df={cfg.min_df} training reviews "
                        "(too few reviews?); lower nbsvm.min_df") from e
    labels = np.asarray(labels)
    ratio = log_count_ratio(x, labels, cfg.alpha)
    # The dual solver is the fast one when features (about 1M) outnumber reviews (about 22,500).
    # A fixed random_state: liblinear's dual solver visits coordinates in a random order.
    clf = LogisticRegression(C=cfg.C, solver="liblinear", dual=True, max_iter=1000, random_state=0)
    clf.fit(x @ sparse.diags(ratio), labels)
    ngrams = vec.get_feature_names_out().tolist()
    return NBSVM(ngrams, ratio, clf.coef_.ravel().astype(np.float32), float(clf.intercept_[0]), cfg.order,
                 round(time.perf_counter() - start, 2))


def fit_with_validation(train_texts: Sequence[str], train_labels: np.ndarray, val_texts: Sequence[str],
                        val_labels: np.ndarray, cfg: NBSVMConfig) -> NBSVM:
    """Fit on the training reviews and take the margins of the validation reviews `(N_val,)` (what
    stacking is fitted on); with `cfg.refit`, fit again on both and return that fit, carrying the
    first fit's validation margins.

    Refitting on all labelled data once held-out predictions are taken is the usual last step of
    stacking (Wolpert 1992; scikit-learn's StackingClassifier refits each estimator on all of X):
    on the three best.yaml runs of version 0.3 it raised stacked test accuracy by 0.10 to 0.14 points.
    Raises UserError as `fit_nbsvm` does.
    """
    held_out = fit_nbsvm(train_texts, train_labels, cfg)
    val_margins = held_out.decision_function(val_texts)
    if not cfg.refit:
        held_out.val_margins = val_margins
        return held_out
    branch = fit_nbsvm([*train_texts, *val_texts], np.concatenate([train_labels, val_labels]), cfg)
    branch.fit_seconds = round(held_out.fit_seconds + branch.fit_seconds, 2)
    branch.val_margins = val_margins
    return branch
