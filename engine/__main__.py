"""`python -m engine <verb>` (also `accelerate launch -m engine train run.yaml`)."""

import sys

from engine.cli import main

sys.exit(main())
