# `make run`: set up, get the data, preprocess -> train -> eval with configs/quick.yaml.
# `make test`: the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
DATA_DIR ?= data
CONFIG ?= configs/quick.yaml
RUN_DIR ?= runs/$(basename $(notdir $(CONFIG)))

# On the project's own machines the data set and NLTK data lie in ../shared: use them there
# instead of the network (the archive there is a re-pack, hence its own checksum).
SHARED ?= $(wildcard ../shared)
ifneq ($(SHARED),)
export NLTK_DATA ?= $(abspath $(SHARED))/nltk_data
export IMDB_RNN_SHARED ?= $(abspath $(SHARED))
DOWNLOAD_FROM := --url $(abspath $(SHARED))/data/aclImdb_v1.tar.gz --sha256 b3ea9abf41a0fd29824b9c1aa68d7533ee679c479ba71fa5804f3ba1b6f9044d
endif

.PHONY: setup data run test bench explain-png clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

data: setup
	$(BIN)/imdb-rnn download --data-dir $(DATA_DIR) $(DOWNLOAD_FROM) --quiet

run: data
	$(BIN)/imdb-rnn preprocess --config $(CONFIG) --data-dir $(DATA_DIR)
	$(BIN)/imdb-rnn train --config $(CONFIG) --data-dir $(DATA_DIR) --run-dir $(RUN_DIR) --overwrite
	$(BIN)/imdb-rnn eval --run $(RUN_DIR) --data-dir $(DATA_DIR)

# One pytest-xdist worker per core, each on its own core (tests/conftest.py).
test: setup
	$(BIN)/python -m pytest -q -n auto

# The benchmarks behind the README's figures (about 45 minutes on 2 cores); JSON in bench/results/.
bench: data
	$(BIN)/python bench/accuracy.py --data-dir $(DATA_DIR) --fresh tutorial tutorial-fixed best
	$(BIN)/python bench/throughput.py --config configs/best.yaml --data-dir $(DATA_DIR)
	$(BIN)/python bench/preprocess.py --archive $(DATA_DIR)/aclImdb_v1.tar.gz

# docs/explain.png: the explain page for docs/explain-reviews.txt, as headless Chromium draws it.
# Needs a trained run (EXPLAIN_RUN, default RUN_DIR: `make run` makes one) and Debian's chromium.
EXPLAIN_RUN ?= $(RUN_DIR)
CHROMIUM ?= chromium
explain-png:
	$(BIN)/python -m imdb_rnn explain --run $(EXPLAIN_RUN) --file docs/explain-reviews.txt --out docs/explain.html --top 3
	profile=$$(mktemp -d) && $(CHROMIUM) --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
		--user-data-dir=$$profile --screenshot=docs/explain.png --window-size=1200,1400 \
		file://$(abspath docs/explain.html); status=$$?; rm -rf $$profile; exit $$status

clean:
	rm -rf $(VENV) runs
