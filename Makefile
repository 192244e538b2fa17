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
