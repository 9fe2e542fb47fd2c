# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The project needs torch>=2.4; locally we pin the build that installs from this network's mirror.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: wheelhouse venv-offline demo test test-fast lint bench venv clean train compare-models evaluate gpu-check region-bench gpu-predict precision-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/eoleads demo --out runs/demo

lint: venv
	$(VENV)/bin/ruff check pipeline detectors tests notebooks

test: lint
	$(PY) -m pytest -q

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

bench: venv
	$(PY) -m pipeline.evaluation.bench --out docs/benchmarks.md

# Optional: folders of real Sentinel-2 pairs, read in place. REAL_PAIRS: <name>/before.tif, after.tif
# (implants, false alarms); LABELLED_PAIRS: the same plus change.tif (real change, whole cities held
# out). The shipped model was trained with both (see docs/models.md).
REAL_PAIRS ?=
LABELLED_PAIRS ?=
REAL_ARG = $(if $(REAL_PAIRS),--real-pairs $(REAL_PAIRS)) $(if $(LABELLED_PAIRS),--labelled-pairs $(LABELLED_PAIRS))

# device auto: the GPU when torch sees one, else the CPU; precision auto: on a GPU bf16 autocast
# (fp16 with a loss scaler where it has no bf16), on the CPU fp32, as the shipped weights were trained
TRAIN_DEVICE ?= auto
TRAIN_PRECISION ?= auto

train: venv
	$(VENV)/bin/eoleads train --device $(TRAIN_DEVICE) --precision $(TRAIN_PRECISION) $(REAL_ARG)

compare-models: venv
	$(PY) -m pipeline.evaluation.compare $(REAL_ARG)

evaluate: venv
	$(VENV)/bin/eoleads evaluate --held-out --demo-seeds --write-docs $(REAL_ARG)

# fp32 against bf16 on the real pairs (REAL_PAIRS, LABELLED_PAIRS): does reduced precision move the change
# polygons? Into docs/models.md. PRECISION_ARGS="--device cuda" compares the GPU's own autocast.
PRECISION_ARGS ?=
precision-check: venv
	$(PY) -m pipeline.evaluation.precision $(LABELLED_PAIRS) $(REAL_PAIRS) $(PRECISION_ARGS) --out docs/models.md

# On a lent GPU, about 3 minutes; GPU_CHECK_ARGS=--compile also times torch.compile.
# A Hulunbuir-sized AOI over procedural imagery (nothing stored): REGION_FRACTION=1 runs the whole region
REGION_FRACTION ?= 20
region-bench: venv
	$(PY) -m pipeline.evaluation.region --fraction $(REGION_FRACTION) --out runs/region --write-docs -q

gpu-check: venv
	$(PY) -m pipeline.evaluation.gpucheck --out docs/benchmarks.md $(GPU_CHECK_ARGS)

# No GPU needed: what an H100-class card would do for all of Hulunbuir, from this CPU's figures.
gpu-predict: venv
	$(PY) -m pipeline.evaluation.gpucheck --predict --out docs/benchmarks.md

# A host without registry access (docs/offline.md): `make wheelhouse` where a registry can be reached
# gathers the wheels; `make venv-offline` on the host builds .venv from them beside the host's torch.
WHEELHOUSE ?= dist/wheelhouse
WHEELHOUSE_ARGS ?=
wheelhouse: venv
	$(PY) -m pipeline.wheelhouse collect --out $(WHEELHOUSE) $(WHEELHOUSE_ARGS)

venv-offline:
	$(PYTHON) -m pipeline.wheelhouse install --wheelhouse $(WHEELHOUSE) --venv $(VENV)

clean:
	rm -rf runs .pytest_cache .ruff_cache
