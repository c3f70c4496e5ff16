"""Pixel-wise uncertainty: calibration against exact Gaussian posteriors, Student's t oracle, correlation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from diffcourse.posterior.uncertainty import (calibration, coverage, gaussian_coverage, pixel_stats,
                                              std_error_correlation, student_coverage)

from _util import gen

F64 = torch.float64


def gaussian_posterior(S, B=4, size=64, seed=0, std_scale=1.0):
    """S samples and one truth, all i.i.d. N(mu, sd^2) per pixel (sd varies over pixels); the samples'
    spread is multiplied by ``std_scale`` (1: calibrated)."""
    g = gen(seed)
    mu = torch.rand(B, 1, size, size, generator=g, dtype=F64)
    sd = 0.02 + 0.2 * torch.rand(B, 1, size, size, generator=g, dtype=F64)
    truth = mu + sd * torch.randn(B, 1, size, size, generator=g, dtype=F64)
    samples = mu + std_scale * sd * torch.randn(S, B, 1, size, size, generator=g, dtype=F64)
    return samples, truth


def mc_tol(p, n):  # 5 binomial standard deviations
    return 5 * math.sqrt(p * (1 - p) / n)


def test_pixel_stats_are_the_mean_and_unbiased_std():
    s = torch.randn(5, 2, 1, 3, 3, generator=gen(1), dtype=F64)
    mean, std = pixel_stats(s)
    np.testing.assert_allclose(mean.numpy(), s.numpy().mean(0), atol=1e-15)
    np.testing.assert_allclose(std.numpy(), s.numpy().std(0, ddof=1), atol=1e-15)
    with pytest.raises(ValueError, match="S >= 2"):
        pixel_stats(s[:1])


@pytest.mark.parametrize("S", [2, 5, 8, 30])
@pytest.mark.parametrize("k", [0.5, 1.0, 2.0, 3.0])
def test_student_coverage_matches_scipy(S, k):
    expected = 2 * stats.t.cdf(k / math.sqrt(1 + 1 / S), S - 1) - 1
    assert student_coverage(k, S) == pytest.approx(expected, abs=1e-9)


def test_student_coverage_tends_to_the_gaussian_one():
    for k in (1, 2, 3):
        assert gaussian_coverage(k) == pytest.approx(math.erf(k / math.sqrt(2)))
        assert student_coverage(k, 10**6) == pytest.approx(gaussian_coverage(k), abs=1e-5)
        assert student_coverage(k, 8) < gaussian_coverage(k) - 0.005   # few samples: a wider spread


def test_exact_gaussian_posterior_with_many_samples_matches_erf():
    samples, truth = gaussian_posterior(400, B=2, size=48, seed=2)
    cal = calibration(samples, truth, ks=(1, 2, 3))
    n = truth[0].numel()
    for j, k in enumerate(cal.ks):
        p = gaussian_coverage(k)
        assert cal.gaussian[j].item() == pytest.approx(p)
        assert (cal.observed[:, j] - p).abs().max() < mc_tol(p, n) + 0.01, (k, cal.observed[:, j])


def test_exact_gaussian_posterior_with_8_samples_matches_student_not_erf():
    samples, truth = gaussian_posterior(8, B=4, size=64, seed=3)
    cal = calibration(samples, truth)
    n = truth.numel()
    pooled = cal.observed.mean(0)                                         # 4 images of equal size
    for j, k in enumerate(cal.ks):
        assert abs(pooled[j] - cal.student[j]) < mc_tol(cal.student[j].item(), n), (k, pooled[j])
    # the S -> infinity value is off by far more than the Monte-Carlo error at k = 1 and 2
    assert (cal.gaussian[:2] - pooled[:2]).min() > mc_tol(0.7, n)


@pytest.mark.parametrize("scale, direction", [(0.3, -1), (3.0, 1)])
def test_miscalibrated_samples_fail_the_check(scale, direction):
    samples, truth = gaussian_posterior(8, B=2, size=64, seed=4, std_scale=scale)
    cal = calibration(samples, truth)
    gap = cal.observed.mean(0) - cal.student                              # over-confident: too few pixels
    assert bool((direction * gap > 0.01).all()), gap
    assert direction * gap[0] > 0.1, gap                                     # k = 1: far off


def test_biased_mean_fails_the_check():
    samples, truth = gaussian_posterior(8, B=2, size=64, seed=5)
    cal = calibration(samples + 0.3, truth)                               # right spread, wrong place
    assert bool((cal.observed.mean(0) < cal.student - 0.3).all())


def test_coverage_with_a_mask_counts_only_the_masked_pixels():
    samples, truth = gaussian_posterior(6, B=2, size=16, seed=6)
    mask = torch.rand(2, 1, 16, 16, generator=gen(7)) > 0.5
    mean, std = pixel_stats(samples)
    inside = ((truth - mean).abs() <= 1.5 * std)
    expected = torch.stack([inside[b][mask[b]].double().mean() for b in range(2)])
    torch.testing.assert_close(coverage(samples, truth, 1.5, mask=mask), expected)
    with pytest.raises(ValueError, match="no pixel"):
        coverage(samples, truth, 1.0, mask=torch.zeros_like(mask))
    with pytest.raises(ValueError, match="shape of one sample"):
        coverage(samples, truth[:, :, :8], 1.0)


def test_batch_of_two_equals_two_batches_of_one():
    samples, truth = gaussian_posterior(8, B=2, size=16, seed=8)
    both = calibration(samples, truth).observed
    for b in range(2):
        one = calibration(samples[:, b:b + 1], truth[b:b + 1]).observed
        torch.testing.assert_close(one, both[b:b + 1])


def test_correlation_of_identical_affine_and_negated_maps():
    e = torch.rand(3, 1, 8, 8, generator=gen(9), dtype=F64)
    torch.testing.assert_close(std_error_correlation(e, e), torch.ones(3, dtype=F64))
    torch.testing.assert_close(std_error_correlation(0.5 * e + 2, -e), torch.ones(3, dtype=F64))  # |error|
    torch.testing.assert_close(std_error_correlation(1 - e, e), -torch.ones(3, dtype=F64))


def test_correlation_matches_numpy_and_is_near_zero_for_independent_maps():
    g = gen(10)
    a, b = torch.rand(2, 1, 32, 32, generator=g, dtype=F64), torch.rand(2, 1, 32, 32, generator=g, dtype=F64)
    r = std_error_correlation(a, b)
    for i in range(2):
        assert r[i].item() == pytest.approx(np.corrcoef(a[i].flatten(), b[i].flatten())[0, 1], abs=1e-12)
    assert r.abs().max() < 4 / math.sqrt(32 * 32)
    mask = a > 0.3
    rm = std_error_correlation(a, b, mask=mask)
    for i in range(2):
        sel = mask[i]
        assert rm[i].item() == pytest.approx(np.corrcoef(a[i][sel], b[i][sel])[0, 1], abs=1e-12)


def test_correlation_of_the_gaussian_posterior_std_with_its_error_is_positive():
    # where the posterior is wider the error is larger on average: the std map carries information
    samples, truth = gaussian_posterior(8, B=2, size=64, seed=11)
    mean, std = pixel_stats(samples)
    assert bool((std_error_correlation(std, truth - mean) > 0.2).all())
