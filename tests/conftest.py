import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# Two cores on CI: keep torch from oversubscribing them when pytest runs alone.
torch.set_num_threads(min(2, torch.get_num_threads()))
