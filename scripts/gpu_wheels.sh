#!/usr/bin/env bash
# Fill .whl/ with what `make gpu-check` needs on a GPU machine that has no network and lacks
# these packages (its image: Python 3.12, torch, transformers, accelerate; see the device notes):
#   bitsandbytes (QLoRA, 8-bit optimizers), datasets (+ dill, multiprocess) for the benchmark's
#   baseline arm, and peft at the version tested here,
# plus the demo model's tokenizer files (.whl/demo-tokenizer), which the throughput benchmark
# pairs with random weights. Run it here, once, in the repository root; then carry `.whl`.
# Keeps the total under 58 MiB (the device copies at most 64 MiB with the working tree).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p .whl
grep -qxF "/.whl/" .gitignore 2>/dev/null || echo "/.whl/" >> .gitignore

PEFT_VERSION="$("$PY" -c 'import peft; print(peft.__version__)')"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl bitsandbytes==0.50.2 datasets==5.2.0 "dill>=0.4.1,<0.4.2" "multiprocess<0.70.20" \
  "peft==${PEFT_VERSION}"
# One version of each package: two would stop the whole install on the device.
"$PY" - <<'PYEOF'
import re
from collections import defaultdict
from pathlib import Path

seen = defaultdict(list)
for w in sorted(Path(".whl").glob("*.whl")):
    seen[re.split(r"-\d", w.name, 1)[0].lower()].append(w)
for name, files in seen.items():
    for old in files[:-1]:
        print(f"removing an older {name}: {old.name}")
        old.unlink()
PYEOF

# The demo tokenizer (3.5 MB), from the converted demo model (engine.models.demo_model_dir).
"$PY" - <<'PYEOF'
import shutil
from pathlib import Path

from engine.models import demo_model_dir

src, dst = demo_model_dir(), Path(".whl/demo-tokenizer")
dst.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.name.startswith(("tokenizer", "special_tokens", "chat_template")) or f.name in ("vocab.json", "merges.txt"):
        shutil.copy2(f, dst / f.name)
print("tokenizer files:", sorted(p.name for p in dst.iterdir()))
PYEOF

total=$(du -sb .whl | cut -f1)
ls -la .whl
echo "total: $((total / 1048576)) MiB"
if [ "$total" -gt $((58 * 1048576)) ]; then
  echo "error: .whl is over 58 MiB; the device copies at most 64 MiB with the working tree" >&2
  exit 1
fi
