"""Engine benchmark: the issue's settings shared by every contender, the run sizes, the targets, the device."""

import torch

SETTINGS = {
    "batch_size": 64,  # dlrun's default, and the issue's
    "lr": 1e-3,  # Adam, dlrun's default
    "eval_batch": 512,  # validation batch: dlrun's max(4 * batch_size, 512), used by all three
    "threads": 2,  # torch.set_num_threads: CI has 2 cores
    "seed": 0,  # model init (torch.manual_seed before building) and the shuffle generator
    "patience": 10_000,  # early stopping on, but never fires: every run does its full epoch count
}
FULL = {
    "epochs": 20,  # per epoch-time run; the first epoch (allocator warm-up, lazy init) is excluded
    "repeats": 9,  # epoch-time runs per contender (5 left the CNN ratio within +-6% between two full runs)
    "short": 10, "long": 40, "cost_repeats": 15,  # whole per-epoch cost: epochs of the short and long runs
    "help_repeats": 5, "cli_repeats": 3,  # subprocess runs of `dlrun --help` and of whole `dlrun` runs
    "sizes": [1_000, 10_000, 100_000], "widths": [64, 256, 1024],
    "scaling_epochs": 5, "scaling_repeats": 3,
}
QUICK = {
    "epochs": 6, "repeats": 2, "short": 3, "long": 9, "cost_repeats": 2, "help_repeats": 2, "cli_repeats": 1,
    "sizes": [1_000, 10_000, 100_000], "widths": [64, 256, 1024], "scaling_epochs": 3, "scaling_repeats": 1,
}
TARGETS = {
    "epoch_ratio": 1.05,  # dlrun median epoch / hand loop, both cases, CPU
    "cost_ratio": 1.05,  # dlrun whole per-epoch cost / hand loop, both cases, CPU
    "help_seconds": 1.0,
    "report_seconds": 3.0,  # evaluate + diagnose + render (plots on) of the default run
    "default_run_seconds": 30.0,  # `dlrun trainer.threads=2`, end to end
    "scaling_slope": (0.9, 1.1),  # log-log slope of epoch time against samples, 10k -> 100k: linear is 1
}

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # what trainer.device=auto picks
