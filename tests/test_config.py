"""Config loading: defaults, overrides in one syntax, round trip through the saved YAML."""

from pathlib import Path

import pytest
import yaml

from imdb_rnn.config import config_from_dict, dump_config, load_config
from imdb_rnn.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.name == path.resolve().stem  # seed.yaml is tutorial.yaml under its old name


def test_tutorial_config_is_the_tutorial_recipe():
    cfg = load_config(CONFIGS / "tutorial.yaml")
    assert (cfg.data.source, cfg.data.limit, cfg.data.test_size, cfg.data.split_seed) == ("IMDB Dataset.csv", 1000, 0.2, 0)
    assert cfg.preprocess.pos_prefixes == ["NN"] and cfg.preprocess.remove_stopwords and cfg.preprocess.max_len is None
    m = cfg.model
    assert (m.cell, m.nonlinearity, m.embedding_dim, m.hidden_size, m.num_layers, m.bidirectional) == ("rnn", "tanh", 300, 20, 2, True)
    assert (m.last_step, m.init_hidden) == ("padded", "random")
    t = cfg.train
    assert (t.batch_size, t.lr, t.epochs, t.dynamic_padding) == (16, 0.001, 10, False)
    # configs/seed.yaml stays as an alias of the tutorial recipe
    assert load_config(CONFIGS / "seed.yaml") == cfg


def test_overrides_are_typed_and_nested():
    cfg = config_from_dict({}, ["train.epochs=3", "model.cell=lstm", "preprocess.pos_prefixes=null", "train.lr=5e-4",
                                "preprocess.keep_words=[not, 'no']"])
    assert cfg.train.epochs == 3 and cfg.model.cell == "lstm" and cfg.preprocess.pos_prefixes is None
    assert cfg.train.lr == 5e-4 and cfg.preprocess.keep_words == ["not", "no"]


def test_saved_config_round_trips():
    cfg = config_from_dict({"name": "x"}, ["model.hidden_size=7"])
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg


def test_bad_values_name_the_key():
    with pytest.raises(UserError, match="'model.cell' must be 'rnn' | 'gru' | 'lstm'"):
        config_from_dict({"model": {"cell": "transformer"}})
    with pytest.raises(UserError, match="not of the form section.key=value"):
        config_from_dict({}, ["epochs"])
    with pytest.raises(UserError, match="quote it"):
        config_from_dict({}, ["preprocess.keep_words=[not, no]"])
    with pytest.raises(UserError, match="'train.epochs' must be int"):
        config_from_dict({}, ["train.epochs=true"])
    with pytest.raises(UserError, match=r"'model.embedding_dropout' must be in \[0, 1\), got 1.5"):
        config_from_dict({}, ["model.embedding_dropout=1.5"])
    with pytest.raises(UserError, match="'data.limit' must be at least 1 or null"):
        config_from_dict({}, ["data.limit=0"])
    with pytest.raises(UserError, match="'train.lr' must be float, got True"):
        config_from_dict({}, ["train.lr=true"])
    with pytest.raises(UserError, match="'train.discriminative_lr' must be a finite number, got inf"):
        config_from_dict({}, ["train.discriminative_lr=.inf"])  # would give the lower layers a rate of 0
    # "use null" where null is allowed, whatever the default
    with pytest.raises(UserError, match=r"'model.pretrained_vectors' must not be empty \(use null for none\)"):
        config_from_dict({}, ["model.pretrained_vectors="])
    with pytest.raises(UserError, match=r"'preprocess.pos_prefixes' must not be empty \(null keeps every token: no POS "
                       r"filter\), got \[\]$"):
        config_from_dict({}, ["preprocess.pos_prefixes=[]"])
    with pytest.raises(UserError, match=r"'pretrain.grad_clip' must be positive or null, got 0$"):  # default 0.25
        config_from_dict({"pretrain": {}}, ["pretrain.grad_clip=0"])
    # The adaptive softmax needs cutoffs; the others ignore them.
    with pytest.raises(UserError, match=r"pretrain.softmax=adaptive needs pretrain.cutoffs.*set pretrain.softmax=full$"):
        config_from_dict({"pretrain": {}, "model": {"num_layers": 1}}, ["pretrain.cutoffs=[]"])
    lm = {"pretrain": {"softmax": "sampled"}, "model": {"num_layers": 1}}
    assert config_from_dict(lm, ["pretrain.cutoffs=[]"]).pretrain.cutoffs == []
    with pytest.raises(UserError, match=r"pretrain.cutoffs must be increasing positive ids, got \[0, 5\]"):
        config_from_dict(lm, ["pretrain.cutoffs=[0, 5]"])


def test_renamed_keys_and_values_name_the_new_spelling():
    with pytest.raises(UserError, match="'train.trim_batches' was renamed 'train.dynamic_padding'"):
        config_from_dict({}, ["train.trim_batches=false"])
    with pytest.raises(UserError, match="'exact' was renamed 'as_packed'"):
        config_from_dict({}, ["model.last_step=exact"])


def test_cross_section_rules_run_on_every_load():
    with pytest.raises(UserError, match="train.patience needs a validation split"):
        config_from_dict({}, ["train.patience=2"])
    with pytest.raises(UserError, match="model.ngram_buckets needs model.last_step=as_packed"):
        config_from_dict({}, ["model.last_step=padded", "model.ngram_buckets=8"])
    with pytest.raises(UserError, match="needs preprocess.pad_side=right"):
        config_from_dict({}, ["preprocess.pad_side=left"])


def test_a_bare_key_is_pointed_to_its_section():
    with pytest.raises(UserError, match="unknown config key 'epochs'; did you mean 'train.epochs'"):
        config_from_dict({}, ["epochs=1"])
    with pytest.raises(UserError, match="did you mean 'train.lr'"):
        config_from_dict({}, ["lr=0.1"])
    with pytest.raises(UserError, match="did you mean 'preprocess'"):
        config_from_dict({}, ["preproces.min_freq=2"])
