# Set-up and the two everyday commands. Each target creates or refreshes .venv first.
#   make demo   train LeNet-5 on MNIST: summary, progress, classification report (the main job)
#   make test   the test suite
#   make bench  the benchmarks (minutes)
# TORCH is installed before anything else, so that a CPU machine never pulls a CUDA build; elsewhere,
# e.g.: make demo TORCH="torch --index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.cnnlab-installed

# Real data beside the checkout (this project's shared/ folder) is used when present.
ifneq ($(wildcard ../shared/data/mnist),)
export CNNLAB_DATA ?= $(abspath ../shared/data)
endif

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,sample]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cnnlab train lenet5 --dataset mnist

# One pytest worker per CPU this process may use (pytest-xdist): alone, the suite keeps about one core busy.
# Choose another number with make test TEST_JOBS=N (a container's CPU quota is not seen here).
TEST_JOBS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())")
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS)

# The CPU benchmarks that README's "Measured" paragraph quotes. Not here: the GPU ones (gpu_*.py, for a lent
# GPU machine), and those that read a finished run (time_to_accuracy.py, paired_comparison.py, look_inside.py,
# demo_latency.py): benchmarks/README.md gives their commands.
bench: $(STAMP)
	for b in lenet5_mnist augment_mnist alexnet_throughput inference_speed distributed_step_time torchrun_restarts; do \
	  $(BIN)/python benchmarks/$$b.py || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
