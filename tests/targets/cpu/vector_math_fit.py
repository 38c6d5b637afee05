"""How the polynomials of codegen_templates/c/vector_math.j2 were fitted (run by hand; needs
scipy for erf / erfc in float64): Lawson's iteratively reweighted least squares on a dense grid,
which converges to the minimax fit of the weighted error, then rounded to float32 (printed as
C hex floats). Each fit's weight makes its error relative to the final function value.

    python tests/targets/cpu/vector_math_fit.py
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Basis = list[Callable[[np.ndarray], np.ndarray]]


def lawson(xs: np.ndarray, target: np.ndarray, basis: Basis, weight: np.ndarray,
           iterations: int = 300) -> tuple[np.ndarray, float]:
    """Coefficients minimising max |weight * (sum c_k basis_k - target)|, and that maximum."""
    a = np.stack([b(xs) for b in basis], 1)
    w = np.ones_like(xs) / len(xs)
    for _ in range(iterations):
        root = np.sqrt(w)
        c, *_ = np.linalg.lstsq(a * (root * weight)[:, None], target * root * weight, rcond=None)
        error = np.abs((a @ c - target) * weight)
        w = w * error
        w /= w.sum()
    return c, float(np.max(np.abs((a @ c - target) * weight)))


def powers(n: int, square: bool = False) -> Basis:
    return [(lambda x, k=k: (x * x) ** k) if square else (lambda x, k=k: x ** k) for k in range(n)]


def show(name: str, coefficients: np.ndarray, error: float) -> None:
    text = ", ".join(float(np.float32(c)).hex() + "f" for c in coefficients)
    print(f"{name}: {text}  (fit error {error / 2**-24:.3f} ulp before rounding)")


def main() -> None:
    from scipy.special import erf, erfc

    # exp(r) = 1 + r + r^2 P(r) on [-ln2/2, ln2/2]
    r = np.linspace(-np.log(2) / 2, np.log(2) / 2, 20001)
    r = r[r != 0]
    show("exp", *lawson(r, (np.exp(r) - 1 - r) / r**2, powers(6), r**2 / np.exp(r)))
    # erf(a) = a + a P(a^2) on (0, 0.927734375]
    a = np.linspace(1e-4, 0.927734375, 20001)
    show("erf small", *lawson(a, (erf(a) - a) / a, powers(6, True), a / erf(a)))
    # erf(t) = 1 - exp(t Q(t) - t) on [0.927734375, 3.92]
    t = np.linspace(0.927734375, 3.92, 20001)
    show("erf large", *lawson(t, (np.log(erfc(t)) + t) / t, powers(7), t * erfc(t)))
    # tanh(x) = x + x^3 P(x^2) on (0, 0.625)
    x = np.linspace(1e-4, 0.625, 20001)
    show("tanh small", *lawson(x, (np.tanh(x) - x) / x**3, powers(5, True), x**3 / np.tanh(x)))


if __name__ == "__main__":
    main()
