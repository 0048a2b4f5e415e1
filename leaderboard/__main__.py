"""``python -m leaderboard ...`` is ``lm-envs leaderboard ...``."""

import sys

from leaderboard.cli import main

sys.exit(main())
