# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates the project-local .venv on first use; nothing needs to be installed beforehand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz bench graphviz lint clean docs-images degradation

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, pinned (an unpinned torch pulls a CUDA build of several GB)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,train]'
	# torchvision as the reference of tests/test_torchvision.py: pinned to the build that matches
	# torch 2.13.0, without its dependencies (they would replace the CPU torch); tests/torchvision_ref.py
	# defines the two ops its C extension would register
	$(PY) -m pip install -q --no-deps torchvision==0.28.0
	touch $(STAMP)

graphviz:
	@command -v dot >/dev/null || { apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; }

demo: $(STAMP) graphviz
	$(VENV)/bin/archc build specs/resnet34.arch -o build/

test: $(STAMP) graphviz
	$(VENV)/bin/pytest

# the long fuzz run (tests/fuzz.py): 65,000 compile cases (~13 minutes) and 3,000 generated programs
# checked against their PyTorch modules (~5 minutes); rewrites docs/fuzzing.md
fuzz: $(STAMP)
	$(PY) tests/fuzz.py

# the benchmark suite: measures on this machine and rewrites docs/benchmarks.md (~3 minutes)
bench: $(STAMP)
	$(PY) bench/run.py

# He et al.'s degradation experiment on the bundled digits: plain-20/56 against ResNet-20/56 trained
# alike (docs/degradation.md); rewrites docs/images/degradation.png, the runs go to runs/degradation/
degradation: $(STAMP)
	$(PY) -m archlang.train.degradation --out runs/degradation --figure docs/images/degradation.png

# the diagrams embedded in the README
docs-images: $(STAMP) graphviz
	$(VENV)/bin/archc render specs/resnet34.arch --depth 1 -o docs/images/resnet34.d1.svg
	$(VENV)/bin/archc render specs/resnet34.arch --depth 2 -o docs/images/resnet34.d2.svg
	$(VENV)/bin/archc render specs/inception.arch -n inception3a --depth all -o docs/images/inception3a.svg
	$(VENV)/bin/archc render specs/dense_residual.arch -n dense_residual --depth all -o docs/images/dense_residual.svg
	$(VENV)/bin/archc render specs/torchvision/squeezenet.arch -n squeezenet1_1 --direction LR --style compact \
		-o docs/images/squeezenet1_1.lr.svg

lint: $(STAMP)
	$(VENV)/bin/ruff check archlang tests bench

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
