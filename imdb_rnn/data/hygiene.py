"""Data hygiene: reviews NLTK gave up on, exact duplicates within and across splits, splits of one
label. Each is counted in the preprocess manifest, or refused with a one-line error."""

from __future__ import annotations

from typing import Callable, Optional

from imdb_rnn.config import PreprocessConfig
from imdb_rnn.data.sources import Review
from imdb_rnn.errors import UserError


def drop_failed(reviews: list[Review], tokens: list[Optional[list[str]]], pcfg: PreprocessConfig,
                where: Callable[[str], str]) -> tuple[list[Review], list[list[str]], int]:
    """(reviews, tokens, how many were skipped): the reviews whose tokens are None are refused
    (preprocess.on_error=error, naming the first by `where(review id)`) or skipped (on_error=skip)."""
    failed = [i for i, t in enumerate(tokens) if t is None]
    if failed and pcfg.on_error != "skip":
        raise UserError(f"NLTK gave up tokenizing {len(failed)} review(s) (its regex time limit; first: "
                        f"{where(reviews[failed[0]].id)}); fix or remove them, or set preprocess.on_error=skip")
    if not failed:
        return reviews, tokens, 0
    kept = [i for i, t in enumerate(tokens) if t is not None]
    return [reviews[i] for i in kept], [tokens[i] for i in kept], len(failed)


def duplicates(reviews: list[Review], keys: list[bytes]) -> tuple[dict[str, int], list[int]]:
    """Counts of exact duplicate texts, compared by `keys` (ReviewProcessor.process_with_key:
    the text after normalisation when it is on): extra copies within train, within test, and
    test reviews whose text is in train; and the indices of training reviews whose text is also
    in test."""
    by_split: dict[str, list[int]] = {"train": [], "test": []}
    for i, r in enumerate(reviews):
        by_split.setdefault(r.split, []).append(i)
    train_keys = {keys[i] for i in by_split["train"]}
    test_keys = {keys[i] for i in by_split["test"]}
    counts = {
        "within_train": len(by_split["train"]) - len(train_keys),
        "within_test": len(by_split["test"]) - len(test_keys),
        "test_in_train": sum(1 for i in by_split["test"] if keys[i] in train_keys),
    }
    return counts, [i for i in by_split["train"] if keys[i] in test_keys]


def drop_cross_split(reviews: list[Review], tokens: list[Optional[list[str]]], keys: list[bytes],
                     pcfg: PreprocessConfig) -> tuple[list[Review], list[Optional[list[str]]], dict[str, int]]:
    """Duplicate counts, and with preprocess.drop_cross_split_duplicates the training reviews
    whose text is also in test removed (counted as "dropped_from_train")."""
    counts, leaked = duplicates(reviews, keys)
    counts["dropped_from_train"] = 0
    if pcfg.drop_cross_split_duplicates and leaked:
        gone = set(leaked)
        counts["dropped_from_train"] = len(gone)
        keep = [i for i in range(len(reviews)) if i not in gone]
        reviews, tokens = [reviews[i] for i in keep], [tokens[i] for i in keep]
    return reviews, tokens, counts


def check_classes(split: str, labels: list[int], label_names: list[str]) -> None:
    """Refuse a split whose reviews hold fewer than 2 labels (ids into `label_names`): nothing can
    be learned or measured; and a training split without a review of some label (data.limit or
    the preprocess filters left none; `sources` refuses labels the source itself never trains)."""
    present = sorted(set(labels))
    if labels and len(present) < 2:
        only = label_names[present[0]]
        each = "both classes are" if len(label_names) == 2 else "at least two labels are"
        raise UserError(f"the {split} split holds only {only} reviews ({len(labels)}); the source is likely ordered "
                        f"by label: shuffle it, or raise data.limit so {each} in each split")
    missing = [name for k, name in enumerate(label_names) if k not in present]
    if split == "train" and labels and missing:
        raise UserError(f"no training review of label {', '.join(map(repr, missing))} is left after data.limit and the "
                        "preprocess filters; a class needs training reviews: raise data.limit, or keep more reviews "
                        "(preprocess.empty, preprocess.on_error, preprocess.drop_cross_split_duplicates)")
