"""Augmentation on the device: each operation checked against what it must do, and reproducible from a seed."""

import pytest
import torch

from dlrun.config import AugmentConfig
from dlrun.data.augment import build_augment, gaussian_blur, mixup, rotate_translate
from dlrun.errors import DlrunError

IMAGE = (3, 12, 10)  # (C, H, W), not square, so a mixed-up H and W would show


def batch(n: int = 64, shape: tuple[int, ...] = IMAGE, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def run(cfg: AugmentConfig, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return build_augment(cfg, tuple(x.shape[1:]))(x, torch.Generator().manual_seed(seed))


def test_all_off_returns_none():
    assert build_augment(AugmentConfig(), IMAGE) is None
    assert build_augment(AugmentConfig(mixup=0.4), (20,)) is None  # mixup is the loop's business, not this function's


def test_same_seed_same_output_other_seed_other_output():
    cfg = AugmentConfig(noise=0.1, rotation=15, hflip=True, vflip=True, blur=1.0, translate=2)
    x = batch()
    first, again, other = run(cfg, x, seed=1), run(cfg, x, seed=1), run(cfg, x, seed=2)
    assert first.shape == x.shape
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_noise_has_the_configured_std():
    x = batch(n=256, shape=(20,))
    out = run(AugmentConfig(noise=0.3), x)
    assert (out - x).std().item() == pytest.approx(0.3, rel=0.03)
    assert (out - x).mean().abs().item() < 0.01


@pytest.mark.parametrize("name,dim", [("hflip", -1), ("vflip", -2)])
def test_flip_gives_each_sample_as_is_or_mirrored(name, dim):
    x = batch()
    out = run(AugmentConfig(**{name: True}), x)
    same = (out == x).flatten(1).all(dim=1)  # (N,)
    flipped = (out == x.flip(dim)).flatten(1).all(dim=1)  # (N,)
    assert (same | flipped).all()
    assert same.any() and flipped.any()  # p=0.5 over 64 samples: both happen (fails with probability 2**-63)


def test_zero_rotation_and_translation_is_the_identity():
    # the coordinate convention (align_corners) is right: no half-pixel shift, no stretch
    x = batch()
    out = rotate_translate(x, torch.zeros(len(x)), torch.zeros(len(x), 2))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_turns_the_image_counter_clockwise():
    x = batch(n=4, shape=(2, 6, 6))
    out = rotate_translate(x, torch.full((4,), 90.0), torch.zeros(4, 2))
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_rotation_is_in_pixels_on_a_non_square_image():
    # a 90-degree turn maps the central 6x6 square of a 6x10 image onto itself; a rotation done in normalised
    # coordinates (no H/W correction) would squash it
    x = batch(n=4, shape=(1, 6, 10))
    out = rotate_translate(x, torch.full((4,), 90.0), torch.zeros(4, 2))
    centre = slice(2, 8)
    torch.testing.assert_close(out[..., centre], torch.rot90(x[..., centre], 1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_small_rotation_keeps_the_shape_and_changes_the_values():
    x = batch()
    out = run(AugmentConfig(rotation=10), x)
    assert out.shape == x.shape
    assert ((out - x).flatten(1).abs().amax(dim=1) > 1e-3).all()  # every sample turned (angle 0 has probability 0)
    assert (out - x).abs().mean() < x.abs().mean()  # a small turn, not a scramble


def test_translate_moves_each_image_by_whole_pixels():
    t = 2
    x = batch()
    out = run(AugmentConfig(translate=t), x)
    h, w = IMAGE[1:]
    inner = (slice(None), slice(t, h - t), slice(t, w - t))  # away from the replicated edges
    moved = 0
    for i in range(len(x)):
        matches = [(dx, dy) for dx in range(-t, t + 1) for dy in range(-t, t + 1)
                   if torch.allclose(out[i][inner], torch.roll(x[i], (dy, dx), dims=(-2, -1))[inner], atol=1e-5)]
        assert len(matches) == 1, f"sample {i} is not x moved by whole pixels (matches: {matches})"
        moved += matches[0] != (0, 0)
    assert moved > len(x) // 2  # 24 of 25 shifts move the image


def test_blur_removes_high_frequencies_and_keeps_a_flat_image():
    x = batch()
    out = run(AugmentConfig(blur=1.5), x)

    def high_frequency_energy(images: torch.Tensor) -> torch.Tensor:  # (N,) energy above half the Nyquist frequency
        spectrum = torch.fft.fft2(images).abs() ** 2  # (N, C, H, W)
        fy = torch.fft.fftfreq(images.shape[-2]).abs()[:, None]
        fx = torch.fft.fftfreq(images.shape[-1]).abs()[None, :]
        return (spectrum * ((fy > 0.25) | (fx > 0.25))).sum(dim=(1, 2, 3))

    before, after = high_frequency_energy(x), high_frequency_energy(out)
    assert (after <= before * 1.0001).all()  # no sample sharpened (sigma near 0 leaves it as it was)
    assert after.sum() < 0.5 * before.sum()
    flat = torch.full((2, 1, 8, 8), 3.0)
    torch.testing.assert_close(gaussian_blur(flat, torch.tensor([0.5, 2.0]), radius=6), flat)


def test_blur_sigma_zero_is_the_identity():
    x = batch(n=3)
    torch.testing.assert_close(gaussian_blur(x, torch.zeros(3), radius=3), x, atol=1e-6, rtol=0)


def test_mixup_is_a_convex_combination_with_the_shuffled_batch():
    x = batch(n=32)
    y = torch.arange(32)  # distinct labels, so y_shuffled reveals the permutation
    x_mixed, y_same, y_shuffled, lam = mixup(x, y, alpha=0.4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y_same, y)
    assert sorted(y_shuffled.tolist()) == list(range(32))
    assert 0 <= lam.item() <= 1
    torch.testing.assert_close(x_mixed, lam * x + (1 - lam) * x[y_shuffled])
    again = mixup(x, y, alpha=0.4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x_mixed) and torch.equal(again[3], lam)


def test_mixup_lambda_follows_beta():
    from scipy import stats

    generator = torch.Generator().manual_seed(0)
    x, y = torch.zeros(4, 3), torch.arange(4)
    lams = [mixup(x, y, alpha=0.4, generator=generator)[3].item() for _ in range(2000)]
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 0.01
    assert stats.kstest(lams, stats.beta(2.0, 2.0).cdf).pvalue < 1e-6  # the test can tell a wrong alpha


@pytest.mark.parametrize("key,value", [("rotation", 10.0), ("hflip", True), ("blur", 1.0), ("translate", 2)])
def test_image_only_option_on_tabular_inputs_raises(key, value):
    with pytest.raises(DlrunError, match=rf"reg\.augment\.{key}.*\(20,\)"):
        build_augment(AugmentConfig(**{key: value}), (20,))
