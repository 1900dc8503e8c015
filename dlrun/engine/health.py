"""Training health, measured during the run on one training batch per probed epoch (AutoTrainer, ICSE 2021).

The probe rides on a batch the loop trains on anyway: the last batch of every `report.probe_every`-th epoch. Forward
hooks on the activation modules record, per unit (a feature of a Linear layer, a channel of a Conv layer), whether it
is dead (a ReLU that outputs 0 for every sample of the batch) or saturated (a sigmoid or tanh beyond 99% of its range
for most samples); after backward and before the optimizer step, the weight of every layer gives its gradient norm,
its weight norm and, against the previous probe, its update-to-weight ratio. No extra forward or backward pass, no
host sync until the epoch's end: the cost is the hooks' few reductions on one batch (benchmarks/RESULTS.md).

Rows (one per probed epoch and layer) go to dynamics.csv; dlrun/report/health.py turns them into findings.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

DYNAMICS_COLUMNS = ("epoch", "layer", "kind", "grad_norm", "weight_norm", "update_ratio", "dead_fraction",
                    "saturated_fraction", "nonfinite")
RELU_LIKE = (nn.ReLU, nn.ReLU6)
SQUASHING = {nn.Sigmoid: (0.01, 0.99), nn.Tanh: (-0.99, 0.99)}  # outputs outside (low, high) are saturated


def _units(out: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) or (N, F) -> (N, units, rest): one unit per feature or channel."""
    return out.reshape(out.shape[0], out.shape[1], -1) if out.dim() > 2 else out.unsqueeze(-1)


class Probe:
    def __init__(self, model: nn.Module, every: int, activations: bool = True):
        """activations=False (under torch.compile): gradient and weight norms only, since attaching hooks to a
        compiled model's modules would recompile it twice per probed epoch."""
        self.every = max(1, int(every))
        # the layers that carry a weight matrix or kernel, in forward order as registered (first ... head)
        self.layers = [(name, m) for name, m in model.named_modules()
                       if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
                       and m.weight.requires_grad]
        self.activations = [(name, m) for name, m in model.named_modules()
                            if isinstance(m, RELU_LIKE) or type(m) in SQUASHING] if activations else []
        self._previous: dict[str, torch.Tensor] = {}
        self._handles: list = []
        self._acts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._grads: list[tuple[str, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]] = []
        self.rows: list[dict] = []

    def due(self, epoch: int) -> bool:
        return epoch == 1 or epoch % self.every == 0

    def attach(self) -> None:
        """Hooks for the next forward pass (the probed batch)."""
        for name, module in self.activations:
            self._handles.append(module.register_forward_hook(self._record(name, module)))

    def _record(self, name: str, module: nn.Module):
        def hook(_module, _inputs, out):
            if not isinstance(out, torch.Tensor) or out.dim() < 2:
                return
            units = _units(out.detach().float())  # (N, units, rest)
            if isinstance(module, RELU_LIKE):
                dead = (units.amax(dim=(0, 2)) <= 0).float().mean()
                saturated = torch.zeros((), device=out.device)
            else:
                low, high = SQUASHING[type(module)]
                beyond = ((units <= low) | (units >= high)).float().mean(dim=(0, 2))  # share of outputs per unit
                saturated = (beyond > 0.9).float().mean()
                dead = torch.zeros((), device=out.device)
            self._acts[name] = (dead, saturated)
        return hook

    def after_backward(self, grad_scale: float = 1.0) -> None:
        """Read gradients (unscaled) and weights before the optimizer step; remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._grads = []
        for name, module in self.layers:
            w = module.weight.detach()
            g = module.weight.grad
            grad = g.detach().float().norm() / grad_scale if g is not None else torch.full((), float("nan"),
                                                                                             device=w.device)
            previous = self._previous.get(name)
            update = (w.float() - previous).norm() / previous.norm().clamp_min(1e-12) if previous is not None \
                else None
            self._previous[name] = w.float().clone()
            self._grads.append((name, grad, w.float().norm(), update))

    def collect(self, epoch: int) -> list[dict]:
        """The probed epoch's rows (one per layer, then one per activation module): one host sync for all."""
        nan = torch.full((), float("nan"))
        values = [t.to("cpu", torch.float32) for _, grad, weight, update in self._grads
                  for t in (grad, weight, nan if update is None else update)]
        values += [t.to("cpu", torch.float32) for dead, saturated in self._acts.values() for t in (dead, saturated)]
        flat = torch.stack(values).tolist() if values else []
        rows = []
        for i, (name, *_rest) in enumerate(self._grads):
            grad, weight, update = flat[3 * i: 3 * i + 3]
            rows.append({"epoch": epoch, "layer": name, "kind": "weight", "grad_norm": grad, "weight_norm": weight,
                         "update_ratio": update, "dead_fraction": float("nan"), "saturated_fraction": float("nan"),
                         "nonfinite": int(not (math.isfinite(grad) and math.isfinite(weight)))})
        offset = 3 * len(self._grads)
        for j, name in enumerate(self._acts):
            dead, saturated = flat[offset + 2 * j: offset + 2 * j + 2]
            rows.append({"epoch": epoch, "layer": name, "kind": "activation", "grad_norm": float("nan"),
                         "weight_norm": float("nan"), "update_ratio": float("nan"), "dead_fraction": dead,
                         "saturated_fraction": saturated, "nonfinite": 0})
        self._grads, self._acts = [], {}
        self.rows.extend(rows)
        return rows

    def state_dict(self) -> dict:
        return {"rows": list(self.rows), "previous": {k: v.cpu() for k, v in self._previous.items()}}

    def load_state_dict(self, state: Optional[dict], device: torch.device) -> None:
        if state:
            self.rows = list(state.get("rows", []))
            self._previous = {k: v.to(device) for k, v in state.get("previous", {}).items()}
