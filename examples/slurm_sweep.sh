#!/bin/bash
# A sweep on Slurm through Hydra's submitit launcher (pip install 'dlrun[cluster]'): one Slurm job per sweep point,
# the summary written when all have finished. Run it from a login node (it waits for the jobs; use tmux or
# `hydra.launcher` with a short timeout and `dlrun-summary SWEEP_DIR` later if you detach).
#   bash examples/slurm_sweep.sh
# Time limits: submitit asks Slurm for USR2 signal_delay_s (120) seconds ahead; dlrun checkpoints on it and hands it
# to submitit, which requeues the job (max_num_timeout: 3 in conf/hydra/launcher/slurm.yaml). The requeued job
# continues from its checkpoint because of trainer.resume=auto and the fixed hydra.sweep.dir.
# Resuming a sweep that was stopped (Ctrl-C, a killed login shell): run the same command again; finished jobs are
# skipped, interrupted ones continue, and the summary covers all of them.
set -euo pipefail
sweep_dir="multirun/dropout-vs-lr"

dlrun -m hydra/launcher=slurm \
    hydra.launcher.partition=gpu hydra.launcher.timeout_min=120 \
    hydra.launcher.gpus_per_node=1 hydra.launcher.cpus_per_task=8 hydra.launcher.mem_gb=16 \
    hydra.launcher.account="${SLURM_ACCOUNT:-null}" \
    hydra.sweep.dir="$sweep_dir" trainer.resume=auto \
    model=resnet dataset=cifar10 dataset.root=/data/cifar10 \
    reg.dropout=0,0.25,0.5 optim.lr=0.01,0.001
