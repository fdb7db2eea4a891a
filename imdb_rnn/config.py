"""Typed, validated run configuration: YAML file + `section.key=value` overrides.

Unknown keys and wrong types are rejected with a message naming the key (and the nearest valid
key), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from imdb_rnn.errors import UserError


@dataclass
class DataConfig:
    # Path of the source, relative to the data directory unless absolute: the official tarball,
    # an extracted aclImdb/ directory, or a Kaggle-format CSV ("IMDB Dataset.csv").
    source: str = "aclImdb_v1.tar.gz"
    # CSV: take the first N rows before splitting (as the seed does). Tarball/directory: take N
    # reviews of each official split, after a seeded shuffle (the archive is grouped by class).
    limit: Optional[int] = None
    # Share of a CSV held out as the test split (sources with an official split keep it).
    test_size: float = 0.2
    split_seed: int = 0


@dataclass
class PreprocessConfig:
    remove_stopwords: bool = True
    # Words kept even though NLTK lists them as stopwords (negations carry sentiment).
    keep_words: list[str] = field(default_factory=list)
    # Keep tokens whose Penn Treebank tag starts with one of these; null keeps every token
    # (and skips the tagger).
    pos_prefixes: Optional[list[str]] = field(default_factory=lambda: ["NN"])
    lowercase: bool = False
    min_freq: int = 1
    max_vocab: Optional[int] = None
    # Pad to the longest review (null) or cut reviews to this many tokens.
    max_len: Optional[int] = None
    truncate: Literal["end", "start"] = "end"  # which part to cut away when over max_len
    pad_side: Literal["right", "left"] = "right"
    # Reviews with no token left after filtering: keep them (length 0) or drop and count them.
    empty: Literal["keep", "drop"] = "keep"


@dataclass
class ModelConfig:
    cell: Literal["rnn", "gru", "lstm"] = "rnn"
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    embedding_dim: int = 300
    hidden_size: int = 20
    num_layers: int = 2
    bidirectional: bool = True
    embedding_dropout: float = 0.0
    layer_dropout: float = 0.0
    output_dropout: float = 0.0
    # "padded": the seed's out[:, -1, :] of the padded batch. "exact": each direction reads each
    # review's true last token and padding never enters the state.
    last_step: Literal["padded", "exact"] = "exact"
    # "random": a fresh N(0, 1) initial state on every call, as the seed draws it.
    init_hidden: Literal["zeros", "random"] = "zeros"
    # Classifier input: "last" (the last step), or "pool": the last step with the max and the
    # mean of the top layer's outputs over each review's tokens (long reviews lose less).
    readout: Literal["last", "pool"] = "last"
    # A linear bag-of-n-grams path added to the logits: one weight per word and per hashed n-gram
    # bucket, summed over the review and scaled by ngram_norm (0 = off; the plain RNN). Too few
    # buckets make unrelated bigrams share a weight.
    ngram_buckets: int = 0
    # How the n-gram weights add up over a review: "mean" divides their sum by the review's length;
    # "sqrt" by its square root, so a long review's evidence is not diluted; "binary" counts each
    # distinct n-gram once and divides by the square root of their number (the L2-normalised
    # binary bag of NBSVM and tf-idf models), so a repeated phrase is not overcounted either.
    ngram_norm: Literal["mean", "sqrt", "binary"] = "mean"
    # Longest n-gram hashed into the buckets: 2 (words and bigrams) or 3 (and trigrams).
    ngram_order: int = 2


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: Optional[float] = None
    # Share of the training split held out for validation / model-best selection (0 = none).
    val_fraction: float = 0.0
    seed: int = 0
    device: str = "auto"
    # Trim each batch to its longest review (exact, and faster); the seed pads to the longest
    # review of the whole data set.
    trim_batches: bool = True
    # Length bucketing: sort pools of this many batches by review length before cutting them, so
    # a batch carries little padding (0 = plain shuffle, as the seed does).
    bucket: int = 0
    # Stop when validation accuracy has not improved for this many epochs (needs val_fraction > 0).
    patience: Optional[int] = None
    # Learning rate per optimizer step: constant, or cosine/linear decay to 0 over the run, after
    # a linear warmup over the first warmup_fraction of the steps.
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_fraction: float = 0.0
    # Learning rate of the n-gram path (model.ngram_buckets); null = train.lr. Its sparse weights
    # need a larger step than the RNN's.
    ngram_lr: Optional[float] = None
    # "joint": one loss on the summed logits. "separate": the RNN and the n-gram path each get
    # their own loss, as two classifiers trained side by side whose logits are summed to predict
    # (an ensemble); jointly, the n-gram path fits the training set first and starves the RNN.
    ngram_loss: Literal["joint", "separate"] = "joint"


@dataclass
class Config:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Checks a type can't express; each returns an error text or None.
_RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "data.limit": (lambda v: v is None or v > 0, "must be a positive number of reviews or null"),
    "data.test_size": (lambda v: 0 < v < 1, "must be between 0 and 1 (exclusive)"),
    "preprocess.pos_prefixes": (lambda v: v is None or len(v) > 0, "must list at least one tag prefix, or be null to keep all tokens"),
    "preprocess.min_freq": (lambda v: v >= 1, "must be at least 1"),
    "preprocess.max_vocab": (lambda v: v is None or v >= 3, "must be at least 3 or null"),
    "preprocess.max_len": (lambda v: v is None or v >= 1, "must be at least 1 or null"),
    "model.embedding_dim": (lambda v: v >= 1, "must be at least 1"),
    "model.hidden_size": (lambda v: v >= 1, "must be at least 1"),
    "model.num_layers": (lambda v: v >= 1, "must be at least 1"),
    "model.embedding_dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "model.layer_dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "model.output_dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "model.ngram_buckets": (lambda v: v >= 0, "must be 0 (off) or a number of hash buckets"),
    "model.ngram_order": (lambda v: v in (2, 3), "must be 2 (words and bigrams) or 3 (and trigrams)"),
    "train.epochs": (lambda v: v >= 1, "must be at least 1"),
    "train.batch_size": (lambda v: v >= 1, "must be at least 1"),
    "train.lr": (lambda v: v > 0, "must be positive"),
    "train.weight_decay": (lambda v: v >= 0, "must not be negative"),
    "train.grad_clip": (lambda v: v is None or v > 0, "must be positive or null"),
    "train.val_fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "train.bucket": (lambda v: v >= 0, "must be 0 (off) or a number of batches per pool"),
    "train.patience": (lambda v: v is None or v >= 1, "must be at least 1 or null"),
    "train.warmup_fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "train.ngram_lr": (lambda v: v is None or v > 0, "must be positive or null"),
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return {type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` checked against the annotation `tp`; raise UserError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError:
                pass
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [_coerce(v, typing.get_args(tp)[0], key) for v in value]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    fix = "quote it (YAML reads yes/no/on/off as booleans)" if tp is str and isinstance(value, bool) else "fix the value in the config or override"
    raise UserError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}; {fix}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"config section '{prefix or 'top level'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{near[0]}'?" if near else f"; valid keys: {', '.join(names)}"
            raise UserError(f"unknown config key '{full}'{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            value = _coerce(value, tp, full)
            check = _RANGES.get(full)
            if check and not check[0](value):
                raise UserError(f"config key '{full}' {check[1]}, got {value!r}")
            kwargs[key] = value
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value`; the value is read as YAML (so 3, 0.5, true, null, [a, b] work)."""
    if "=" not in text:
        raise UserError(f"override '{text}' is not of the form section.key=value (e.g. train.epochs=3)")
    key, _, value = text.partition("=")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def config_from_dict(raw: dict[str, Any], overrides: list[str] = ()) -> Config:
    raw = dict(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[path[-1]] = value
    return _build(Config, raw, "")


def load_config(path: Path, overrides: list[str] = ()) -> Config:
    """Load a YAML config; `name` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass an existing file, e.g. --config configs/quick.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise UserError(f"config file {path} has a YAML syntax error{where}: {problem}; fix the file") from e
    except UnicodeDecodeError as e:
        raise UserError(f"config file {path} is not UTF-8 text; save it as UTF-8") from e
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of sections, got {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    return config_from_dict(raw, overrides)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
