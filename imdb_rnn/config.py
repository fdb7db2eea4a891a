"""Typed, validated run configuration: YAML file + `section.key=value` overrides.

Each section is a pydantic model (pydantic v2): a field's type, default and range sit on one line,
unknown keys are refused, and `validate` holds the rules that span sections. Every stage gets its
config from `load_config` or `config_from_dict`, so every stage runs all the checks. A failed check
is one line naming the key (and, for a typo, the nearest valid key), never a silent default.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import annotated_types
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from imdb_rnn.errors import UserError


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # lax floats would take true as 1.0
        raise ValueError("bool")
    return value


# Strict everywhere but floats: PyYAML reads 1e-3 (no dot) as a string, which a float field takes.
# No float setting means anything infinite or NaN (YAML's .inf, .nan).
Float = Annotated[float, BeforeValidator(_no_bool), Field(strict=False, allow_inf_nan=False)]

# Keys and values that were renamed: the old spelling gets a message naming the new one.
RENAMED_KEYS = {"train.trim_batches": "train.dynamic_padding"}
RENAMED_VALUES = {("model.last_step", "exact"): "as_packed"}
# What null means for a key whose empty value is refused, where "use null for none" would mislead.
NULL_MEANS = {"preprocess.pos_prefixes": "null keeps every token: no POS filter"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


def _int_to_str(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):  # YAML reads [0, 1] as integers
        return str(value)
    return value


LabelName = Annotated[str, BeforeValidator(_int_to_str)]


class DataConfig(Section):
    # Path of the source, relative to the data directory unless absolute: the official tarball,
    # an extracted aclImdb/ directory, a Hugging Face folder of Parquet files by split
    # (stanfordnlp/imdb's plain_text/train-*.parquet, test-*, unsupervised-*), or one table:
    # .csv, .tsv (unquoted), .jsonl (JSON Lines) or .parquet, e.g. Kaggle's "IMDB Dataset.csv".
    source: str = "aclImdb_v1.tar.gz"
    # A table of test reviews (same columns) for a table source, which is then not split; null:
    # split the source (data.test_size). Relative to the data directory unless absolute.
    test_source: Optional[str] = Field(None, min_length=1)
    # A table's (or Parquet folder's) text and label columns; null: the first present of
    # review, text and of sentiment, label.
    text_column: Optional[str] = Field(None, min_length=1)
    label_column: Optional[str] = Field(None, min_length=1)
    # The labels in id order (id = position), matched ignoring case and surrounding spaces; a
    # label outside the list is an error. Integer labels 0..N-1 index a list of words (e.g.
    # [negative, positive] over 0/1). null: a Parquet ClassLabel's names, else the values found,
    # sorted (integers by value; words alphabetically, so negative=0, positive=1).
    labels: Optional[list[LabelName]] = None
    # The archive's task: "sentiment" (its neg/ and pos/ folders), or "rating_band": the rating
    # in each file name (ID_RATING.txt) in 4 classes 1-2, 3-4, 7-8, 9-10 (ids in that order).
    target: Literal["sentiment", "rating_band"] = "sentiment"
    # A single table: take its first N rows, then split (as the tutorial does); with
    # data.test_source, the first N rows of each. Tarball, directory, Parquet folder: N reviews of
    # each split, after a seeded shuffle (the archive is grouped by class).
    limit: Optional[int] = Field(None, ge=1)
    # Share of a single table held out as the test split, stratified by label (sources with a
    # split of their own keep it).
    test_size: Float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0


class PreprocessConfig(Section):
    # First step: HTML line breaks and tags removed, entities decoded, Unicode NFKC, typographic
    # quotes/apostrophes/dashes to ASCII, whitespace collapsed (imdb_rnn/data/normalize.py).
    # Off in the tutorial recipe, which stays byte-faithful.
    normalize: bool = False
    remove_stopwords: bool = True
    # Words kept even though NLTK lists them as stopwords (negations carry sentiment).
    keep_words: list[str] = []
    # Keep tokens whose Penn Treebank tag starts with one of these; null keeps every token
    # (and skips the tagger).
    pos_prefixes: Optional[list[str]] = Field(["NN"], min_length=1)
    lowercase: bool = False
    min_freq: int = Field(1, ge=1)
    max_vocab: Optional[int] = Field(None, ge=3)
    # Pad to the longest review (null) or cut reviews to this many tokens.
    max_len: Optional[int] = Field(None, ge=1)
    truncate: Literal["end", "start"] = "end"  # which part to cut away when over max_len
    pad_side: Literal["right", "left"] = "right"
    # Reviews with no token left after filtering: keep them (length 0) or drop and count them.
    empty: Literal["keep", "drop"] = "keep"
    # A review NLTK gives up on (its regex time limit, e.g. "a. " repeated 200,000 times): stop
    # with an error naming it, or skip it and count it in the manifest.
    on_error: Literal["error", "skip"] = "error"
    # Drop from the training split every review whose text (after normalisation) is also in the
    # test split: the official split shares 123 such reviews, which inflate test accuracy.
    drop_cross_split_duplicates: bool = False


class ModelConfig(Section):
    cell: Literal["rnn", "gru", "lstm"] = "rnn"
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    embedding_dim: int = Field(300, ge=1)
    hidden_size: int = Field(20, ge=1)
    num_layers: int = Field(2, ge=1)
    bidirectional: bool = True
    embedding_dropout: Float = Field(0.0, ge=0, lt=1)
    # Standardise each embedding dimension by its mean and variance over the vocabulary, each word
    # weighted by its frequency in the training data (Miyato et al. 2016, who perturb the embeddings
    # so normalised: imdb_rnn/model/embedding_norm.py). A pretrain run and the classifier it starts
    # must agree on it.
    normalize_embeddings: bool = False
    layer_dropout: Float = Field(0.0, ge=0, lt=1)
    output_dropout: Float = Field(0.0, ge=0, lt=1)
    # Which step the classifier reads. "padded": the tutorial's out[:, -1, :] of the padded batch.
    # "as_packed": each direction's state at the review's own last token, padding never entering
    # the state: the h_n that pack_padded_sequence gives, without packing.
    last_step: Literal["padded", "as_packed"] = "as_packed"
    # "random": a fresh N(0, 1) initial state on every call, as the tutorial draws it.
    init_hidden: Literal["zeros", "random"] = "zeros"
    # Classifier input: "last" (the last step), or "pool": the last step with the max and the
    # mean of the top layer's outputs over each review's tokens (long reviews lose less).
    readout: Literal["last", "pool"] = "last"
    # The n-gram branch: a linear bag of words and hashed n-grams beside the RNN, whose logits
    # training adds to the RNN's (eval and predict stack them when the run kept a validation
    # split); one weight per word and per hash bucket (0 = no branch). Too few buckets make
    # unrelated n-grams share a weight.
    ngram_buckets: int = Field(0, ge=0)
    # How the n-gram weights add up over a review: "mean" divides their sum by the review's length;
    # "sqrt" by its square root, so a long review's evidence is not diluted; "binary" counts each
    # distinct n-gram once and divides by the square root of their number (the L2-normalised
    # binary bag of NBSVM and tf-idf models), so a repeated phrase is not overcounted either.
    ngram_norm: Literal["mean", "sqrt", "binary"] = "mean"
    # Longest n-gram hashed into the buckets: 2 (words and bigrams) or 3 (and trigrams).
    ngram_order: Literal[2, 3] = 2
    # A run directory written by `imdb-rnn pretrain`: the embedding and the recurrent layers start
    # from its language model's weights (same vocabulary and shapes, checked); null: random init.
    # Relative to the working directory. Read once, when training starts; the run keeps the weights.
    init_from: Optional[str] = None
    # Pretrained word vectors for the embedding's first values (imdb_rnn/model/vectors.py): a GloVe
    # .txt, word2vec .txt or .bin, or fastText .vec file (.gz too), relative to the data directory
    # unless absolute. Each vocabulary token takes the row of the same word, else of the word
    # ignoring case; the others keep the usual initialisation. Train reads it once; the weights
    # then live in the run's checkpoints, which eval, predict and --resume use alone.
    pretrained_vectors: Optional[str] = Field(None, min_length=1)
    # Keep the embedding as initialised (no gradient, no optimizer step).
    freeze_embeddings: bool = False


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=1)  # the global batch: the same whatever the number of processes
    lr: Float = Field(1e-3, gt=0)
    weight_decay: Float = Field(0.0, ge=0)
    grad_clip: Optional[Float] = Field(None, gt=0)  # max gradient norm
    # Share of the training split held out for validation / model-best selection (0 = none).
    val_fraction: Float = Field(0.0, ge=0, lt=1)
    seed: int = 0
    device: str = "auto"
    # CPU threads of each process (torch.set_num_threads); null: the cores this process may use
    # divided by the imdb-rnn processes training or scoring on this node (torchrun's included),
    # counted again every 5 s, at least 1 (imdb_rnn/training/threads.py).
    threads: Optional[int] = Field(None, ge=1)
    # Dynamic padding: pad each batch to its own longest review (the same logits, fewer steps);
    # false pads every batch to the longest review of the whole data set, as the tutorial does.
    dynamic_padding: bool = True
    # Length bucketing: sort pools of this many batches by review length before cutting them, so
    # a batch carries little padding (0 = plain shuffle, as the tutorial does).
    bucket: int = Field(0, ge=0)
    # Early stopping: stop when validation accuracy has not improved for this many epochs.
    patience: Optional[int] = Field(None, ge=1)
    # Learning rate per optimizer step: constant, or cosine/linear decay to 0 over the run, after
    # a linear warmup over the first warmup_fraction of the steps.
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_fraction: Float = Field(0.0, ge=0, lt=1)
    # Learning rate of the n-gram branch (model.ngram_buckets); null = train.lr. Its sparse
    # weights need a larger step than the RNN's.
    ngram_lr: Optional[Float] = Field(None, gt=0)
    # "joint": one loss on the summed logits. "separate": the RNN and the n-gram branch each get
    # their own loss, as two classifiers trained side by side whose logits are summed to predict
    # (an ensemble); jointly, the n-gram branch fits the training set first and starves the RNN.
    ngram_loss: Literal["joint", "separate"] = "joint"
    # TensorBoard event file in the run directory (tensorboard/): per-epoch losses, accuracies,
    # learning rate, tokens/s and gradient norm, and the config as hparams; rank 0 writes it.
    # Needs the tensorboard package; false writes none.
    tensorboard: bool = True
    # Adversarial training on the word embeddings (Miyato et al. 2016): "at" adds the loss of each
    # review with its embedded sequence moved by adv_epsilon (L2 norm over the whole review) along
    # the loss's gradient; "vat" adds the KL divergence between the prediction and that of the
    # review moved in its most sensitive direction (no label needed), found by one power iteration.
    adversarial: Literal["none", "at", "vat"] = "none"
    adv_epsilon: Float = Field(5.0, gt=0)
    adv_weight: Float = Field(1.0, gt=0)  # the adversarial loss's weight beside the clean one
    vat_xi: Float = Field(1e-6, gt=0)  # size of the random probe of the power iteration (vat)
    # ULMFiT's fine-tuning (Howard & Ruder 2018), for a model started from model.init_from. The RNN
    # branch's layer groups, from the top: the linear head, each recurrent layer (top first), the
    # embedding. discriminative_lr: each group learns at the rate of the group above divided by
    # this factor (ULMFiT: 2.6); null: all at train.lr.
    discriminative_lr: Optional[Float] = Field(None, ge=1)
    # gradual_unfreezing: epoch 1 trains the head alone (the n-gram branch trains as usual), each
    # later epoch unfreezes the next group down, until every group trains.
    gradual_unfreezing: bool = False
    # An exponential moving average of the weights (Polyak & Juditsky 1992; torch.optim.swa_utils'
    # EMA): after every optimizer step the averaged weights move 1 - ema_decay of the way to the
    # trained ones. Validation, model-best.pt and model-last.pt (hence eval, predict, export) use
    # the averaged weights; training goes on from the trained ones. null: no averaging.
    ema_decay: Optional[Float] = Field(None, gt=0, lt=1)


class PretrainConfig(Section):
    # `imdb-rnn pretrain`: a language model with the classifier's embedding and recurrent layers
    # (model section), trained on the unlabelled reviews and the training split's texts (never the
    # test split's) with truncated backpropagation through time; a bidirectional model trains a
    # forward and a backward LM side by side (as ULMFiT). model.init_from then starts from it.
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(64, ge=1)  # rows of the stream: each reads its own contiguous slice
    bptt: int = Field(70, ge=1)  # truncated BPTT: steps per chunk; the state carries over, detached
    lr: Float = Field(2e-3, gt=0)
    lr_schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_fraction: Float = Field(0.01, ge=0, lt=1)
    grad_clip: Optional[Float] = Field(0.25, gt=0)
    weight_decay: Float = Field(0.0, ge=0)
    dropout: Float = Field(0.1, ge=0, lt=1)  # on the embeddings and the RNN's outputs
    # "adaptive": torch's AdaptiveLogSoftmaxWithLoss (Grave et al. 2017), frequent words in a small
    # head, rare ones in clusters of smaller size; "full": one softmax over the whole vocabulary;
    # "sampled": the full softmax's weights trained against `samples` words drawn per chunk (Jean et
    # al. 2015), the exact softmax for held-out perplexity.
    softmax: Literal["adaptive", "full", "sampled"] = "adaptive"
    # adaptive: ids where the clusters start; those not below the vocabulary's size - 1 are left out
    # (the log says so), and with none left the output layer is one softmax.
    cutoffs: list[int] = [2000, 10000]
    samples: int = Field(512, ge=1)  # sampled: words drawn (log-uniform over frequency rank) per chunk and direction
    # full or sampled softmax: share the embedding matrix as output weights (Press & Wolf 2017; needs
    # model.hidden_size == model.embedding_dim).
    tie_weights: bool = False
    unlabelled: bool = True  # read the source's unlabelled reviews (the IMDB archive's train/unsup)
    heldout_fraction: Float = Field(0.02, gt=0, lt=1)  # of the reviews: held-out perplexity per epoch
    max_tokens: Optional[int] = Field(None, ge=1000)  # cut the training stream (a reduced-size run)
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = Field(None, ge=1)


class NBSVMConfig(Section):
    # The NBSVM branch (imdb_rnn/model/nbsvm.py; Wang & Manning 2012), fitted with scikit-learn
    # beside the RNN on the same tokens, uncut; the section's presence turns it on.
    order: int = Field(3, ge=1, le=5)  # n-grams of 1..order tokens
    min_df: int = Field(2, ge=1)  # n-grams in fewer training reviews are left out
    alpha: Float = Field(1.0, gt=0)  # smoothing of the naive Bayes counts
    C: Float = Field(1.0, gt=0)  # inverse strength of the logistic regression's L2 penalty
    # true: once its validation margins (what stacking is fitted on) are taken, the branch is fitted
    # again on every training review, validation included, and that fit is the one stored and used.
    refit: bool = True


class Config(Section):
    # Names the run directory (runs/NAME) and the preprocess artifacts: a plain name, no path.
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    # null: no NBSVM branch. With one, the branches' scores (RNN, NBSVM, and the hashed n-grams when
    # model.ngram_buckets > 0) are stacked with weights fitted on the validation split
    # (imdb_rnn/model/stack.py).
    nbsvm: Optional[NBSVMConfig] = None
    # null: no language-model pretraining (`imdb-rnn pretrain` needs this section).
    pretrain: Optional[PretrainConfig] = None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def validate(cfg: Config) -> Config:
    """The rules that span sections; raises UserError naming the keys to change."""
    m, p, t = cfg.model, cfg.preprocess, cfg.train
    if cfg.data.labels is not None:
        from imdb_rnn.data.labels import check_names

        if len(cfg.data.labels) < 2:
            raise UserError(f"data.labels lists {len(cfg.data.labels)} label(s); list at least 2, or set it to null "
                            "to take the labels found")
        check_names(cfg.data.labels, "data.labels")
    if m.last_step == "as_packed" and p.pad_side != "right":
        raise UserError("model.last_step=as_packed needs preprocess.pad_side=right; set one of them accordingly")
    for key, used in (("readout", m.readout != "last"), ("ngram_buckets", m.ngram_buckets)):
        if used and m.last_step != "as_packed":
            raise UserError(f"model.{key} needs model.last_step=as_packed (it reads each review's true length)")
    if m.nonlinearity != "tanh" and m.cell != "rnn":
        raise UserError(f"model.nonlinearity={m.nonlinearity} applies to cell=rnn only (GRU and LSTM have fixed "
                        "gates); set model.cell=rnn or remove model.nonlinearity")
    if cfg.nbsvm is not None and not t.val_fraction:
        raise UserError("nbsvm needs a validation split to fit the stacking weights on; set train.val_fraction "
                        "(e.g. 0.1) or nbsvm=null")
    if m.init_from and m.pretrained_vectors:
        raise UserError("model.init_from and model.pretrained_vectors both set the embedding; keep one (set the "
                        "other to null)")
    if t.adversarial != "none" and m.last_step != "as_packed":
        raise UserError(f"train.adversarial={t.adversarial} needs model.last_step=as_packed")
    if cfg.pretrain is not None:
        lm = cfg.pretrain
        if m.bidirectional and m.num_layers > 1:
            raise UserError("pretrain needs model.num_layers=1 for a bidirectional model (a backward LM's states "
                            "cannot feed a forward layer); set model.num_layers=1 or model.bidirectional=false")
        if lm.tie_weights and (lm.softmax == "adaptive" or m.hidden_size != m.embedding_dim):
            raise UserError("pretrain.tie_weights needs pretrain.softmax=full or sampled and model.hidden_size == "
                            "model.embedding_dim; set pretrain.tie_weights=false")
        if lm.softmax == "adaptive" and not lm.cutoffs:
            raise UserError("pretrain.softmax=adaptive needs pretrain.cutoffs, e.g. [2000, 10000]; for one softmax over "
                            "the vocabulary set pretrain.softmax=full")
        if list(lm.cutoffs) != sorted(set(lm.cutoffs)) or any(c < 1 for c in lm.cutoffs):
            raise UserError(f"pretrain.cutoffs must be increasing positive ids, got {lm.cutoffs}")
    if t.patience and not t.val_fraction:
        raise UserError("train.patience needs a validation split; set train.val_fraction (e.g. 0.1) or patience=null")
    return cfg


# --- error messages -------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return {type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _section_type(annotation: Any) -> Optional[type]:
    """The section class of a field typed as a section or an optional one (nbsvm), else None."""
    for tp in (annotation, *typing.get_args(annotation)):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
    return None


def _field(loc: tuple) -> tuple[Optional[type], Any]:
    """(section class, field info) that an error location points at."""
    cls: Any = Config
    info = None
    for part in loc:
        if not isinstance(part, str) or not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            break
        info = cls.model_fields.get(part)
        if info is None:
            return cls, None
        if _section_type(info.annotation) is not None:
            cls = _section_type(info.annotation)
            continue
        return cls, info
    return cls, info


def _range_text(info: Any) -> str:
    bounds = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in info.metadata
              if isinstance(m, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt))}
    low = f"[{bounds['Ge']}" if "Ge" in bounds else f"({bounds['Gt']}" if "Gt" in bounds else None
    high = f"{bounds['Le']}]" if "Le" in bounds else f"{bounds['Lt']})" if "Lt" in bounds else None
    if low and high:
        text = f"must be in {low}, {high}"
    elif "Gt" in bounds:
        text = "must be positive" if bounds["Gt"] == 0 else f"must be greater than {bounds['Gt']}"
    elif "Ge" in bounds:
        text = "must not be negative" if bounds["Ge"] == 0 else f"must be at least {bounds['Ge']}"
    else:
        text = f"must be at most {bounds.get('Le', bounds.get('Lt'))}"
    return text + (" or null" if _nullable(info) else "")


def _nullable(info: Any) -> bool:
    """Whether the field takes null (Optional), whatever its default."""
    return info is not None and type(None) in typing.get_args(info.annotation)


def _message(err: dict) -> str:
    loc, value, kind = err["loc"], err.get("input"), err["type"]
    key = ".".join(p for p in loc if isinstance(p, str))
    section, info = _field(loc)
    if kind == "extra_forbidden":
        if key in RENAMED_KEYS:
            return f"config key '{key}' was renamed '{RENAMED_KEYS[key]}'; use the new name"
        prefix, _, name = key.rpartition(".")
        names = list(section.model_fields)
        if not prefix:  # a bare key (epochs=1): name the section it belongs to
            nested = {f: f"{s}.{f}" for s, info in reversed(Config.model_fields.items())
                      if _section_type(info.annotation) is not None
                      for f in _section_type(info.annotation).model_fields}
            near = difflib.get_close_matches(name, list(nested) + names, n=1)
            if near and near[0] in nested:
                return f"unknown config key '{key}'; did you mean '{nested[near[0]]}'?"
        near = difflib.get_close_matches(name, names, n=1)
        dotted = f"{prefix}." if prefix else ""
        hint = f"; did you mean '{dotted}{near[0]}'?" if near else f"; valid keys: {', '.join(names)}"
        return f"unknown config key '{key}'{hint}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"config section '{key or 'top level'}' must be a mapping, got {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and info is not None:
        return f"config key '{key}' {_range_text(info)}, got {value!r}"
    if kind == "finite_number":
        return f"config key '{key}' must be a finite number, got {value!r}"
    if kind in ("too_short", "string_too_short"):
        _, field_info = _field(loc)
        hint = NULL_MEANS.get(key, "use null for none") if _nullable(field_info) else None
        return f"config key '{key}' must not be empty{f' ({hint})' if hint else ''}, got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"config key '{key}' must be a plain name (letters, digits, '.', '_', '-'; no path), got {value!r}"
    renamed = RENAMED_VALUES.get((key, value)) if isinstance(value, str) else None
    if renamed:
        return f"config key '{key}': {value!r} was renamed {renamed!r}; use the new name"
    expected = _type_name(info.annotation) if info is not None else "valid"
    fix = ("quote it (YAML reads yes/no/on/off as booleans)" if kind == "string_type" and isinstance(value, bool)
           else "fix the value in the config or override")
    return f"config key '{key}' must be {expected}, got {value!r}; {fix}"


# --- loading --------------------------------------------------------------------------------

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


def apply_overrides(raw: dict[str, Any], overrides: typing.Iterable[str] = ()) -> dict[str, Any]:
    """A copy of the raw config mapping with each `section.key=value` set."""
    raw = dict(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[path[-1]] = value
    return raw


def config_from_dict(raw: dict[str, Any], overrides: typing.Iterable[str] = ()) -> Config:
    """Build and validate a Config; raises UserError naming the first bad key."""
    try:
        cfg = Config.model_validate(apply_overrides(raw, overrides))
    except ValidationError as e:
        raise UserError(_message(e.errors(include_url=False)[0])) from None
    return validate(cfg)


def load_config(path: Path, overrides: typing.Iterable[str] = ()) -> Config:
    """Load a YAML config; `name` defaults to the file's stem. Raises UserError."""
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


def spelled(value: Any) -> str:
    """`value` as a config or an override spells it: true, false and null for booleans and None
    (not Python's True, False, None), repr for the rest."""
    if value is None or isinstance(value, bool):
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value)


def first_difference(have: dict, want: dict, have_label: str, want_label: str, prefix: str = "") -> str:
    """'section.key: HAVE_LABEL x, WANT_LABEL y' for the first key (sorted) where two config
    mappings differ, or "" when they are equal."""
    for key in sorted(set(have) | set(want)):
        a, b = have.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, have_label, want_label, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {have_label} {spelled(a)}, {want_label} {spelled(b)}"
    return ""
