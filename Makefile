# Two commands do all the set-up:  `make demo` (main job) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench refcodecs gpu-check clean-venv

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cloud3d demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The paper's reference codecs from their official sources (BPG ~14 min, VTM ~20 min on 2 cores;
# needs build-essential cmake yasm libpng-dev libjpeg-dev). Then export what it prints.
CODECS_PREFIX ?= $(CURDIR)/.codecs
refcodecs: $(STAMP)
	$(BIN)/cloud3d codecs build bpg --prefix $(CODECS_PREFIX)
	$(BIN)/cloud3d codecs build vtm --prefix $(CODECS_PREFIX)

# On a machine with an NVIDIA GPU: the CUDA tests (required, not skipped) and the GPU speed
# figures of the learned codecs (issue 6's targets), written to gpu-check/.
gpu-check: $(STAMP)
	mkdir -p gpu-check
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee gpu-check/gpu.txt
	CLOUD3D_REQUIRE_CUDA=1 $(BIN)/python -m pytest -q -rs tests/test_models_codec.py \
		tests/test_models_train.py -k "gpu or cuda" 2>&1 | tee gpu-check/tests.txt
	$(BIN)/python benchmarks/codec_speed.py --device cuda --sizes small-pruned,xsmall-pruned,small,large \
		--res 720p,1080p --repeats 5 --csv gpu-check/speed.csv 2>&1 | tee gpu-check/speed.txt
	$(BIN)/python benchmarks/codec_speed.py --device cuda --sizes small-pruned --res 1080p --repeats 5 \
		--fp16 --no-reference --csv gpu-check/speed-fp16.csv 2>&1 | tee gpu-check/speed-fp16.txt

clean-venv:
	rm -rf $(VENV)
