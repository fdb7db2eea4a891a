"""Label names and ids: the archive's two label sets, and a table's label values -> ids 0..C-1.

A label's id is its position in the list of names. A table's values are matched to the names
ignoring case and surrounding spaces; integers 0..C-1 index the names when the names are words
(a Hugging Face ClassLabel column, or `data.labels: [negative, positive]` over 0/1 labels). An
integral decimal ("1.0", as pandas writes an integer column that held an empty cell) is that
integer.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable, Optional, Sequence

from imdb_rnn.errors import UserError

SENTIMENT_NAMES = ["negative", "positive"]  # the archive's neg/ and pos/ folders
# The archive's ratings (ID_RATING.txt) have no 5 or 6: 1-4 are negative reviews, 7-10 positive.
RATING_BANDS = ["1-2", "3-4", "7-8", "9-10"]
_INTEGER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")  # "1.0" too


def rating_band(rating: int) -> Optional[int]:
    """The id in RATING_BANDS of a 1-10 rating, or None for 5, 6 or one out of range."""
    return {1: 0, 2: 0, 3: 1, 4: 1, 7: 2, 8: 2, 9: 3, 10: 3}.get(rating)


def _is_integer(value: str) -> bool:
    return _INTEGER.fullmatch(value) is not None


def _integer(value: str) -> int:
    """The integer an _is_integer value spells: "007" and "7.0" are 7."""
    return int(value.partition(".")[0])


def _key(value: str) -> str:
    """What two spellings of one label share: case, surrounding spaces, leading zeros and a zero
    fraction aside."""
    value = value.strip()
    return str(_integer(value)) if _is_integer(value) else value.casefold()


def infer_names(values: Iterable[str]) -> list[str]:
    """The distinct non-empty label values, sorted: numerically when all are integers (names
    like "0", "1"; "1.0" is 1), else alphabetically in lower case (so negative=0, positive=1)."""
    distinct = {v.strip() for v in values if v.strip()}
    if distinct and all(_is_integer(v) for v in distinct):
        return [str(n) for n in sorted({_integer(v) for v in distinct})]
    return sorted({v.casefold() for v in distinct})


def check_names(names: Sequence[str], origin: str) -> None:
    """Refuse a label list with an empty name or a name twice (ignoring case and spaces)."""
    seen: set[str] = set()
    for name in names:
        key = _key(name)
        if not key:
            raise UserError(f"{origin} holds an empty label name; give every label a name")
        if key in seen:
            raise UserError(f"{origin} lists the label {name!r} twice (labels match ignoring case); list each once")
        seen.add(key)


def to_ids(values: Sequence[str], names: Sequence[str], origin: str, column: str,
           where: Callable[[int], str]) -> list[int]:
    """Each value's id in `names`. `values` are stripped strings ("" for an empty cell),
    `origin` says where the names came from (for the message), `where(i)` names row i.

    Raises UserError naming the first row whose label is empty or not among the names.
    """
    for i, v in enumerate(values):
        if not v.strip():
            raise UserError(f"{where(i)} has an empty label in column '{column}'; fill it in or remove the row")
    keys = {_key(n): i for i, n in enumerate(names)}
    by_index = not any(_is_integer(n.strip()) for n in names) and all(_is_integer(v) for v in values)
    ids = []
    for i, v in enumerate(values):
        if by_index:
            k = _integer(v)
            if not 0 <= k < len(names):
                raise UserError(f"{where(i)} has label {v} in column '{column}', but {origin} has {len(names)} "
                                f"names ({', '.join(names)}: ids 0..{len(names) - 1}); fix the row or add names "
                                "to data.labels")
            ids.append(k)
            continue
        k = keys.get(_key(v))
        if k is None:
            raise UserError(f"{where(i)} has label {v!r} in column '{column}', which is not among {origin} "
                            f"({', '.join(names)}); add it to data.labels or fix the row")
        ids.append(k)
    return ids


def check_trained(names: Sequence[str], origin: str, train: Sequence[int], test: Sequence[int], test_where: str) -> None:
    """Refuse a label that no training review has: a class cannot be learned from nothing, and
    another spelling in the test data would shift the ids. `train` and `test` are the splits' ids
    into `names`, `origin` says where the names came from, `test_where` names the test split.

    Raises UserError naming the labels: those in the test split first (fix: the test labels),
    else the listed names no review has.
    """
    trained = set(train)
    missing = [k for k in range(len(names)) if k not in trained]
    if not missing:
        return
    known = ", ".join(names[k] for k in sorted(trained))
    tested = Counter(test)
    stray = [k for k in missing if tested[k]]
    if stray:
        raise UserError(f"{test_where} has {sum(tested[k] for k in stray)} review(s) labelled "
                        f"{', '.join(repr(names[k]) for k in stray)}, which no training review has; a class needs "
                        f"training reviews: fix the test labels (the training labels are {known})")
    # A ClassLabel's names are indexed by the values: leaving one out of data.labels would shift the others.
    fix = "remove it from data.labels" if origin == "data.labels" else \
        "a class needs training reviews: add some, or relabel the data without it"
    raise UserError(f"no training review has label {', '.join(repr(names[k]) for k in missing)} (from {origin}); {fix}")
