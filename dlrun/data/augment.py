"""Data augmentation and noise injection on the device, for training batches only.

`build_augment(cfg.reg.augment, in_shape)` returns one function `augment(x, generator) -> x` (or None when every
option is off, so the hot loop pays nothing). It works on whole batches of already-normalised inputs on the device:
no per-sample Python loop, no host sync (no `.item()`), and every random number comes from the `generator` it is
given, so a run replays from its seed. The order is flips -> rotation and translation (one resampling) -> blur ->
noise: geometry first, so the noise is not smoothed by the blur or the interpolation.

`mixup(x, y, alpha, generator)` is separate because it also changes the loss (Zhang et al., 2018,
https://arxiv.org/abs/1710.09412): loss = lam * loss(out, y) + (1 - lam) * loss(out, y_shuffled).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

from dlrun.errors import DlrunError

if TYPE_CHECKING:  # torch is imported where used: composing a config must not import it
    import torch

Augment = Callable[["torch.Tensor", "torch.Generator"], "torch.Tensor"]

IMAGE_ONLY = ("hflip", "vflip", "rotation", "translate", "blur")  # AugmentConfig fields that need (C, H, W) inputs


def build_augment(cfg, in_shape: tuple[int, ...]) -> Optional[Augment]:
    """The training-batch augmentation for `cfg` (an AugmentConfig), or None when noise and the image ops are off.

    mixup is not part of it (see `mixup`). Raises DlrunError when an image-only option meets non-image inputs.
    """
    image_ops = [name for name in IMAGE_ONLY if getattr(cfg, name)]
    if image_ops and len(in_shape) != 3:
        keys = ", ".join(f"reg.augment.{name}={getattr(cfg, name)}" for name in image_ops)
        raise DlrunError(f"{keys}: image-only augmentation needs inputs of shape (C, H, W), got in_shape "
                         f"{tuple(in_shape)}; turn it off, or use reg.augment.noise or reg.augment.mixup")
    if not image_ops and cfg.noise == 0:
        return None

    def augment(x: "torch.Tensor", generator: "torch.Generator") -> "torch.Tensor":
        import torch

        n, device, dtype = x.shape[0], x.device, x.dtype
        if cfg.hflip:  # x: (N, C, H, W); each sample mirrored left-right with p=0.5
            mask = torch.rand(n, generator=generator, device=device) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        if cfg.vflip:
            mask = torch.rand(n, generator=generator, device=device) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-2), x)
        if cfg.rotation > 0 or cfg.translate > 0:
            # both in one resampling: interpolating twice would blur twice
            angle = torch.zeros(n, device=device)
            shift = torch.zeros(n, 2, device=device)
            if cfg.rotation > 0:  # (N,) degrees, uniform in [-rotation, rotation]
                angle = (torch.rand(n, generator=generator, device=device) * 2 - 1) * cfg.rotation
            if cfg.translate > 0:  # (N, 2) whole pixels, uniform in -translate..translate
                shift = torch.randint(-cfg.translate, cfg.translate + 1, (n, 2), generator=generator,
                                      device=device).float()
            x = rotate_translate(x, angle, shift)
        if cfg.blur > 0:  # (N,) one sigma per sample, uniform in [0, blur] pixels
            sigma = torch.rand(n, generator=generator, device=device) * cfg.blur
            x = gaussian_blur(x, sigma, radius=max(1, math.ceil(3 * cfg.blur)))
        if cfg.noise > 0:
            x = x + cfg.noise * torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
        return x

    return augment


def rotate_translate(x: "torch.Tensor", angle: "torch.Tensor", shift: "torch.Tensor") -> "torch.Tensor":
    """Rotate each image by angle[i] degrees (counter-clockwise as displayed) about its centre, then move it by
    shift[i] = (right, down) pixels. x: (N, C, H, W), angle: (N,), shift: (N, 2). Edges are replicated.

    One affine_grid + grid_sample call. With align_corners=False the normalised coordinates -1 and 1 are the outer
    edges of the border pixels, so a whole-pixel shift of k is 2k/W and lands on pixel centres (no interpolation
    blur); align_corners=True would stretch the image by one pixel.
    """
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    radians = torch.deg2rad(angle.to(x.dtype))
    cos, sin = radians.cos(), radians.sin()
    shift = shift.to(x.dtype)
    # theta maps each output location to where it samples the input, in normalised coordinates (x right, y down).
    # A pixel-space rotation becomes anisotropic there when H != W, hence the h/w factors.
    row_x = torch.stack([cos, -sin * h / w, -2 * shift[:, 0] / w], dim=-1)  # (N, 3)
    row_y = torch.stack([sin * w / h, cos, -2 * shift[:, 1] / h], dim=-1)  # (N, 3)
    theta = torch.stack([row_x, row_y], dim=1)  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)  # (N, H, W, 2)
    # border: replicate the edge rather than pad with 0, which in normalised units is the mean pixel (a grey frame)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gaussian_blur(x: "torch.Tensor", sigma: "torch.Tensor", radius: int) -> "torch.Tensor":
    """Blur each image with its own Gaussian of std sigma[i] pixels. x: (N, C, H, W), sigma: (N,).

    Separable (a row pass and a column pass) and depthwise: the batch is folded into the channels, so N*C different
    kernels run in one grouped conv2d per pass. Kernel taps -radius..radius; edges are replicated.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)  # (K,)
    sigma = sigma.to(x.dtype).clamp_min(1e-3)  # sigma 0 would divide by 0; 1e-3 is already a delta kernel
    kernel = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)  # (N, K)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(c, dim=0)  # (N*C, K), matching the folded channels below
    folded = x.reshape(1, n * c, h, w)  # (1, N*C, H, W)
    folded = F.pad(folded, (radius, radius, radius, radius), mode="replicate")  # (1, N*C, H+2r, W+2r)
    folded = F.conv2d(folded, kernel[:, None, None, :], groups=n * c)  # (1, N*C, H+2r, W)
    folded = F.conv2d(folded, kernel[:, None, :, None], groups=n * c)  # (1, N*C, H, W)
    return folded.reshape(n, c, h, w)


def mixup(x: "torch.Tensor", y: "torch.Tensor", alpha: float, generator: "torch.Generator"
          ) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """mixup (Zhang et al., 2018): x_mixed = lam * x + (1 - lam) * x[perm], lam ~ Beta(alpha, alpha), one per batch.

    x: (N, *in_shape), y: (N,). Returns (x_mixed, y, y[perm], lam) with lam a 0-d tensor on x's device, so the
    loss lam * loss(out, y) + (1 - lam) * loss(out, y_shuffled) needs no host sync.
    """
    import torch

    # Beta(a, a) = G1 / (G1 + G2) with G ~ Gamma(a, 1). torch.distributions.Beta takes no generator;
    # torch._standard_gamma (what torch.distributions.Gamma calls) does, so lam replays from the seed, on the device.
    concentration = torch.full((2,), float(alpha), device=x.device)
    gammas = torch._standard_gamma(concentration, generator=generator)  # (2,)
    gammas = gammas.clamp_min(torch.finfo(gammas.dtype).tiny)  # small alpha can underflow both to 0 (then 0/0)
    lam = (gammas[0] / gammas.sum()).to(x.dtype)  # ()
    perm = torch.randperm(x.shape[0], generator=generator, device=x.device)  # (N,)
    x_mixed = lam * x + (1 - lam) * x[perm]
    return x_mixed, y, y[perm], lam
