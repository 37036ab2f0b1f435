#!/usr/bin/env bash
# README screenshots, taken from the running studio under Xvfb (a real X server, real fonts).
# The monitor shots train the bundled demo model for $STEPS steps on this machine's CPU.
#   STEPS=12 bash scripts/screenshots.sh        (make screenshots)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=docs/screenshots
STEPS=${STEPS:-12}
mkdir -p "$OUT"
shot() { xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" -m studio --size 1480x940 "$@"; }

shot --demo --tab Data --dock model --screenshot "$OUT/data.png"
shot --demo --tab Data --dock method --theme dark --screenshot "$OUT/method-dark.png"
shot --demo-steps "$STEPS" --dock training --screenshot "$OUT/monitor.png"
shot --demo-steps "$STEPS" --dock method --theme dark --screenshot "$OUT/monitor-dark.png"
xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" scripts/shot_where_to_run.py "$OUT/where-to-run.png"
echo "screenshots written to $OUT/"
