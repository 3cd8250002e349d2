"""The leaderboard contract as docs/tuning.md states it, spelled out here rather than read
from the code under test (tuning.leaderboard, tuning.figure). test_leaderboard.py checks
that the page says exactly this."""

# "Each entry has exactly the keys above, in that order" (docs/tuning.md, "The leaderboard")
ENTRY_KEYS = ("trial_id", "status", "score", "metrics", "hyperparameters", "arch", "params",
              "seconds", "gradients", "run_dir", "weights", "failure")
GRADIENT_KEYS = ("first_last_ratio_init", "first_last_ratio_median", "state", "nonfinite")
# "`leaderboard.png` (1100 x 450 px)" (docs/tuning.md, "The figure")
FIGURE_SIZE = (1100, 450)
