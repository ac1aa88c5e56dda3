"""Linearised reservoir memory and the leak-rate heuristic (lrp_widgets/esn/memory.py)."""
from __future__ import annotations

import math

import pytest
import torch

from lrp_widgets import ESN, suggest_leak_rate
from lrp_widgets.esn import effective_radius, memory_steps


@pytest.mark.parametrize("steps", [8, 32, 100])
def test_heuristic_reduces_to_leak_only_and_solves_its_equation(steps):
    assert suggest_leak_rate(steps, rho_eff=0.0) == pytest.approx(suggest_leak_rate(steps))
    for rho in (0.5, 0.75):
        a = suggest_leak_rate(steps, rho_eff=rho, keep=0.1)
        if a == 1.0:  # capped: 8 steps at rho 0.75 would need a = 1.12
            continue
        assert (1 - a * (1 - rho)) ** (steps - 1) == pytest.approx(0.1)
        assert a == pytest.approx(suggest_leak_rate(steps) / (1 - rho))
    assert suggest_leak_rate(3, rho_eff=0.99) == 1.0  # capped


def test_effective_radius_without_data_is_largest_real_eigenvalue():
    esn = ESN(4, n_reservoir=60, spectral_radius=0.8, seed=3).double()
    eigenvalues = torch.linalg.eigvals(esn.weight)
    assert effective_radius(esn) == pytest.approx(eigenvalues.real.max().item())
    assert effective_radius(esn) <= 0.8 + 1e-9


def test_effective_radius_with_data_uses_tanh_slope():
    esn = ESN(4, n_reservoir=60, seed=3).double()
    esn.bias = torch.zeros_like(esn.bias)
    tiny = torch.full((5, 6, 4), 1e-7, dtype=torch.float64)
    assert effective_radius(esn, tiny) == pytest.approx(effective_radius(esn), rel=1e-6)
    esn.input_weight = esn.input_weight * 100  # saturate tanh: D << 1, the memory shrinks
    large = torch.rand(5, 6, 4, dtype=torch.float64) * 4 - 2
    assert effective_radius(esn, large) < 0.8 * effective_radius(esn)


def test_memory_steps_matches_the_linear_map():
    esn = ESN(2, n_reservoir=40, seed=1).double()
    W = esn.weight
    values, vectors = torch.linalg.eig(W)
    top = int(values.real.argmax())
    assert abs(values[top].imag) < 1e-9  # a real leading eigenvalue, so the mode is a real vector
    a, rho = 0.2, values[top].real.item()
    v = vectors[:, top].real
    J = (1 - a) * torch.eye(40, dtype=torch.float64) + a * W
    steps = memory_steps(a, rho)
    shrink = (torch.linalg.matrix_power(J, 10) @ v).norm() / v.norm()
    assert shrink.item() == pytest.approx(math.exp(-10 / steps), rel=1e-9)
    assert memory_steps(a, rho) == pytest.approx(1 / (a * (1 - rho)), rel=0.15)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_steps"):
        suggest_leak_rate(1, rho_eff=0.5)
    with pytest.raises(ValueError, match="keep"):
        suggest_leak_rate(10, rho_eff=0.5, keep=1.5)
    with pytest.raises(ValueError, match="rho_eff"):
        suggest_leak_rate(10, rho_eff=1.0)
    with pytest.raises(TypeError, match="ESN"):
        effective_radius(torch.nn.Linear(2, 2))
