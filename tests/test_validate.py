"""The shared argument checks: each names the argument and says what was expected."""
import pytest
import torch

from diffcourse._validate import (as_sigma, check_finite, check_image, check_nonnegative, check_positive,
                                  check_tensor)


def test_as_sigma_shapes_and_dtypes():
    x = torch.zeros(3, 1, 4, 4, dtype=torch.float64)
    assert as_sigma(0.5, x).shape == (3, 1, 1, 1) and as_sigma(0.5, x).dtype == torch.float64
    assert torch.equal(as_sigma(torch.tensor([1.0, 2.0, 3.0]), x).flatten(), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert as_sigma(torch.tensor(0.2), x).shape == (3, 1, 1, 1)
    xc = torch.zeros(2, 1, 4, 4, dtype=torch.complex64)
    assert as_sigma(0.1, xc).dtype == torch.float32                     # real levels for complex data


@pytest.mark.parametrize("call, err, name", [
    (lambda: as_sigma(-0.1, torch.zeros(1, 1, 2, 2)), ValueError, "sigma"),
    (lambda: as_sigma(torch.ones(2), torch.zeros(3, 1, 2, 2)), ValueError, "sigma"),
    (lambda: as_sigma("0.1", torch.zeros(1, 1, 2, 2)), TypeError, "sigma"),
    (lambda: as_sigma(float("nan"), torch.zeros(1, 1, 2, 2)), ValueError, "sigma must be a finite"),
    (lambda: as_sigma(float("inf"), torch.zeros(1, 1, 2, 2)), ValueError, "sigma must be a finite"),
    (lambda: as_sigma(torch.tensor([0.1, -float("inf")]), torch.zeros(2, 3), "sigma_y"), ValueError,
     "sigma_y must be a finite number >= 0 \\(a noise level\\), got -inf at index 1"),
    (lambda: check_image(torch.zeros(2, 2), "img"), ValueError, "img"),
    (lambda: check_image(torch.zeros(1, 1, 4, 4), "img", size=(8, 8)), ValueError, "img"),
    (lambda: check_tensor([1.0], "values"), TypeError, "values"),
    (lambda: check_tensor(torch.zeros(2, dtype=torch.int32), "values"), TypeError, "values"),
    (lambda: check_positive(0.0, "rho"), ValueError, "rho"),
    (lambda: check_positive(True, "rho"), TypeError, "rho"),
    (lambda: check_nonnegative(-1, "lam"), ValueError, "lam"),
    (lambda: check_nonnegative(float("nan"), "lam"), ValueError, "lam"),
])
def test_errors_name_the_argument(call, err, name):
    with pytest.raises(err, match=name):
        call()


def test_check_finite_says_where_and_what_to_change():
    with pytest.raises(FloatingPointError, match="step 3.*lower the step"):
        check_finite(torch.tensor([1.0, float("nan")]), "step 3", "lower the step size")
    assert check_finite(torch.ones(2), "ok").sum() == 2
