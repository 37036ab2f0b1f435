# Every target sets itself up on a fresh machine (scripts/setup.sh is idempotent).
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup run demo test lint bench screenshots clean gpu-check gpu-wheels

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m studio --demo

demo: setup
	$(PY) -m engine demo

test: setup
	$(VENV)/bin/ruff check engine studio tests benchmarks
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -ra

bench: setup
	$(PY) benchmarks/throughput.py --device cpu

# One prepared GPU check (benchmarks/gpu_check.py); no setup: on a GPU machine it runs with the
# image's python3 and the wheels in .whl/ (`make gpu-wheels` here first). ARGS=--cpu-dry-run for CI.
gpu-check:
	bash scripts/gpu_check.sh $(ARGS)

gpu-wheels: setup
	bash scripts/gpu_wheels.sh

screenshots: setup
	bash scripts/screenshots.sh

clean:
	rm -rf $(VENV) .pytest_cache
