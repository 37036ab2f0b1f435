# Every target sets itself up on a fresh machine (scripts/setup.sh is idempotent).
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup run demo test lint bench screenshots clean

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

screenshots: setup
	bash scripts/screenshots.sh

clean:
	rm -rf $(VENV) .pytest_cache
