"""Device, precision and process rank: everything that differs between a laptop CPU, a CUDA GPU and torchrun.

- device=auto picks CUDA when there is one. precision=auto is bf16 autocast on a GPU that supports it (no
  GradScaler needed, unlike fp16), fp32 on the CPU (CPU bf16 autocast is slower than fp32 for small models).
- channels_last helps convolutions on tensor cores; it is applied to 4-D inputs and conv models on CUDA only.
- DDP after nanoGPT's train.py: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; every process trains on its share of
  each epoch's batches, gradients are averaged by DistributedDataParallel, and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch

from dlrun.errors import DlrunError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full fp32
    channels_last: bool
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def precision(self) -> str:
        return {None: "32", torch.bfloat16: "bf16", torch.float16: "16"}[self.amp_dtype]

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def setup_distributed(rt: Runtime) -> None:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPUs); a no-op for a single process."""
    import torch.distributed as dist

    if rt.world_size > 1 and not dist.is_initialized():
        if rt.device.type == "cuda":
            torch.cuda.set_device(rt.device)
        dist.init_process_group(backend="nccl" if rt.device.type == "cuda" else "gloo")


def teardown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # no process tears the group down while another still talks to it
        dist.destroy_process_group()


def native_bf16() -> bool:
    """The GPU computes bf16 in hardware (Ampere and later); older GPUs only emulate it, slower than fp32."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no including_emulation and reports native support only
        return torch.cuda.is_bf16_supported()


def grad_scaler(rt: "Runtime"):
    """fp16 needs loss scaling (gradients underflow otherwise); bf16 and fp32 do not: None there."""
    if rt.amp_dtype is not torch.float16:
        return None
    return torch.amp.GradScaler(rt.device.type)


def batch_generator(gen: torch.Generator, data_device: torch.device, device: torch.device,
                    seed: int) -> torch.Generator:
    """The generator for random draws on training batches (augmentation, mixup): on the batches' device.

    The in-memory path keeps data and batches on one device and shares the shuffle's generator; the streamed path
    shuffles on the CPU and copies batches to the GPU, where a CPU generator cannot draw."""
    if data_device == device:
        return gen
    batch_gen = torch.Generator(device=device)
    batch_gen.manual_seed(seed + 1)
    return batch_gen


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def resolve(device: str, precision: str, conv_model: bool = False) -> Runtime:
    """Turn trainer.device / trainer.precision into a Runtime, with a clear error for impossible requests."""
    cuda = torch.cuda.is_available()
    if device == "auto":
        dev = torch.device("cuda" if cuda else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and not cuda:
            raise DlrunError(f"trainer.device={device} but no CUDA GPU is visible; use trainer.device=auto or cpu")
    rank, world = distributed_rank()
    if dev.type == "cuda" and world > 1:  # under torchrun each process drives the GPU of its local rank
        local = int(os.environ.get("LOCAL_RANK", 0))
        if dev.index is not None and dev.index != local:
            log.warning("trainer.device=%s under torchrun: process %d uses cuda:%d, its local rank's GPU (restrict "
                        "the GPUs with CUDA_VISIBLE_DEVICES instead)", device, rank, local)
        if local >= torch.cuda.device_count():
            raise DlrunError(f"torchrun started local rank {local} but only {torch.cuda.device_count()} CUDA GPUs "
                             "are visible: lower --nproc_per_node")
        dev = torch.device("cuda", local)
    if precision == "auto":
        amp = torch.bfloat16 if dev.type == "cuda" and native_bf16() else None
    elif precision == "32":
        amp = None
    elif precision == "bf16":
        amp = torch.bfloat16
    else:  # "16"
        if dev.type != "cuda":
            raise DlrunError("trainer.precision=16 needs a CUDA GPU (fp16 with a GradScaler); "
                             "on the CPU use trainer.precision=bf16 or 32")
        amp = torch.float16
    return Runtime(device=dev, amp_dtype=amp, channels_last=dev.type == "cuda" and conv_model,
                   rank=rank, world_size=world)


def cpu_threads(setting, environ=None) -> Optional[int]:
    """trainer.threads -> the intra-op thread count to set (None: leave torch's default).

    auto: the CPUs this process may run on (os.sched_getaffinity: what Slurm, taskset, cgroups-aware launchers
    grant), capped by SLURM_CPUS_PER_TASK when set, divided among the LOCAL_WORLD_SIZE processes torchrun starts on
    this node, and capped by OMP_NUM_THREADS when set (the variable torch itself reads: joblib's workers get
    cores // n_jobs in it, and a user who sets it means it); at least 1."""
    import os

    if setting is None:
        return None
    if str(setting) != "auto":
        return int(setting)
    environ = os.environ if environ is None else environ
    granted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    slurm = environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        granted = min(granted, int(slurm))
    local = environ.get("LOCAL_WORLD_SIZE", "")
    if local.isdigit() and int(local) > 1:
        granted //= int(local)
    omp = environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        granted = min(granted, int(omp))
    return max(1, granted)
