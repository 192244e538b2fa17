# Two commands do all the set-up:  `make demo` (main job) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench refcodecs gpu-check train-lap gpu-lap clean-venv

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
# table (issue 22: 1080p and 720p, c2f-xsmall-pruned and c2f-small-pruned, the new coder at 1, 2
# and all cores next to the coder before container v3, substream overhead), all in gpu-check/.
# Every step is bounded (timeout 150 s + 200 s); about 2-4 minutes in all. A machine without network whose
# Python already has the dependencies: make gpu-check GPU_PY=python3 (no venv is made).
GPU_PY ?=
GPU_RUN = env PYTHONPATH=$(CURDIR) $(or $(GPU_PY),$(BIN)/python)
gpu-check: $(if $(GPU_PY),,$(STAMP))
	@command -v nvidia-smi >/dev/null 2>&1 || { echo "error: nvidia-smi not found: gpu-check needs an NVIDIA GPU"; exit 1; }
	mkdir -p gpu-check
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee gpu-check/gpu.txt
	-git rev-parse HEAD > gpu-check/commit.txt 2>/dev/null
	CLOUD3D_REQUIRE_CUDA=1 timeout 150 $(GPU_RUN) -m pytest -q -rs -p no:cacheprovider \
		tests/test_models_codec.py tests/test_models_train.py -k "gpu or cuda" 2>&1 | tee gpu-check/tests.txt
	timeout 200 $(GPU_RUN) benchmarks/codec_speed.py --device cuda --sizes xsmall-pruned,small-pruned \
		--res 1080p,720p --repeats 5 --no-reference --today --csv gpu-check/speed.csv 2>&1 \
		| tee gpu-check/speed.txt

# One lap of the bundled models' training plan (docs/models.md, "Training plan"): DATA is a
# dataset made by `cloud3d split`; BUDGET wall seconds; STAGE general, supertuxkart, ...
# On a CPU it runs niced and checkpoints in RUNS; kept weights land in models/bundled/.
DATA ?= dataset
BUDGET ?= 3600
STAGE ?= general
RUNS ?= runs/laps
train-lap: $(STAMP)
	nice -n 10 $(BIN)/cloud3d lap $(DATA) --stage $(STAGE) --budget $(BUDGET) --runs $(RUNS)

# The same lap on a lent GPU machine as one command: PACK (made here with `cloud3d pack DATA
# -o pack.tar`, <= 60 MB) is restored there, the lap runs on CUDA (GPU_BUDGET seconds, its
# throughput sweep included) and the weights, card and tables are copied to LAP_OUT ($$OUT on
# the device machine) to be committed here.
PACK ?= pack.tar
GPU_BUDGET ?= 420
LAP_OUT ?= $(if $(OUT),$(OUT),gpu-lap)
gpu-lap: $(STAMP)
	rm -rf .gpu-lap-data
	$(BIN)/cloud3d unarchive $(PACK) -o .gpu-lap-data --quiet
	$(BIN)/cloud3d lap .gpu-lap-data --stage $(STAGE) --budget $(GPU_BUDGET) --runs $(RUNS) \
		--device cuda --batch 16
	mkdir -p $(LAP_OUT)
	cp $(RUNS)/$(STAGE)/laps.csv $(RUNS)/$(STAGE)/log.csv $(LAP_OUT)/
	-cp models/bundled/$(STAGE).json models/bundled/$(STAGE).npz $(LAP_OUT)/

clean-venv:
	rm -rf $(VENV)
