"""Stacking: the branches' margins combined with weights fitted on the validation split.

Stacked generalization (Wolpert 1992), as Mesnil et al. 2014 combined NBSVM with neural models:
a logistic regression (scikit-learn) whose inputs are each branch's margin (the log-odds of label
1 it gives a review) and whose target is the label, fitted on reviews none of the branches was
trained on. A branch that is stronger, or more sure of itself, gets more weight than a plain sum
would give it. Margins exist for two classes only: with more, the branches' logits are summed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from imdb_rnn.errors import UserError


@dataclass
class Stack:
    branches: list[str]  # input order, e.g. ["rnn", "nbsvm"]
    coef: list[float]  # one weight per branch
    intercept: float
    reviews: int  # validation reviews it was fitted on

    def margin(self, margins: dict[str, np.ndarray]) -> np.ndarray:
        """The stacked margin `(N,)` from each branch's margins `(N,)`."""
        return sum(w * np.asarray(margins[b], dtype=np.float64) for b, w in zip(self.branches, self.coef)) \
            + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stack":
        try:
            stack = cls([str(b) for b in d["branches"]], [float(w) for w in d["coef"]], float(d["intercept"]),
                        int(d["reviews"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"the checkpoint's stacking weights are corrupt ({e}); retrain, or use another run") from e
        if len(stack.branches) != len(stack.coef):
            raise UserError("the checkpoint's stacking weights are corrupt (one weight per branch expected); retrain")
        return stack


def fit_stack(margins: dict[str, np.ndarray], labels: np.ndarray) -> Stack:
    """Fit the weights on validation reviews: `margins` maps branch -> `(N,)`, `labels` `(N,)` of 0 and 1.

    Raises ValueError for labels other than 0 and 1 (stacking margins is for two classes).
    """
    from sklearn.linear_model import LogisticRegression

    if not np.isin(labels, (0, 1)).all():
        raise ValueError("stacking margins needs labels 0 and 1 (two classes)")
    names = list(margins)
    x = np.stack([np.asarray(margins[n], dtype=np.float64) for n in names], 1)
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:  # a logistic regression needs both classes: fall back to the sum
        return Stack(names, [1.0] * len(names), 0.0, len(labels))
    clf = LogisticRegression(C=1.0, random_state=0).fit(x, labels)
    return Stack(names, clf.coef_.ravel().tolist(), float(clf.intercept_[0]), len(labels))
