"""Re-runnable numbers behind the PWLQ implementation (quoted in the README).

    python -m sdk.toolchain.quant.numerics_report

1. the paper's closed-form breakpoints against the exact minimiser of Eq. 4 (truncated fits), and
   against the paper's printed reading "p*/m = ...";
2. weight MSE of PWLQ / uniform on Gaussian and Laplacian data, each breakpoint method, b = 2..8;
3. Lemma 2: expected-error ratio E_pw(p*) / E_uni against its bound C(b-1) / (16 C(b)).
Takes about half a minute on one core (mostly the 3-breakpoint empirical search); prints
Markdown tables.
"""
from __future__ import annotations

import numpy as np

from .breakpoints import METHODS, gaussian_closed_form, laplacian_closed_form, select_breakpoints
from .error_model import DISTRIBUTIONS, expected_error_1bp, uniform_expected_error
from .pwlq import pw, quantize_pwlq
from .uniform import error_constant, quantize_uniform, uni

M_VALUES = (2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0)
CLOSED = {"gaussian": gaussian_closed_form, "laplacian": laplacian_closed_form}


def optimum(m: float, name: str, bits: int = 4) -> float:
    """Exact minimiser of Eq. 4 on (0, m/2] (std units) for the truncated fit ``name``."""
    return float(select_breakpoints(np.array([[-1.0, 1.0]]), np.array([m]), bits, 1, f"{name}_expected")[0, 0])


def closed_form_table() -> str:
    rows = ["| fit | m | p* (Eq. 4) | closed form p* | rel. diff | extra E (%) | 'p*/m' reading: p* = |",
            "|---|---|---|---|---|---|---|"]
    for name, closed in CLOSED.items():
        dist = DISTRIBUTIONS[name]
        for m in M_VALUES:
            p_opt, p_cf = optimum(m, name), float(closed(m))
            extra = 100 * (expected_error_1bp(p_cf, m, dist, 4) / expected_error_1bp(p_opt, m, dist, 4) - 1)
            rows.append(f"| {name} | {m:g} | {p_opt:.4f} | {p_cf:.4f} | {abs(p_cf - p_opt) / p_opt:.2%} "
                        f"| {extra:.3f} | {p_cf * m:.2f} (> m/2 = {m / 2:g}) |")
    return "\n".join(rows)


def mse_ratio_table(n_channels: int = 64, k: int = 576, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    data = {"gaussian": rng.normal(size=(n_channels, k)), "laplacian": rng.laplace(size=(n_channels, k))}
    rows = ["| data | bits | " + " | ".join(METHODS) + " | 2 bp (emp.) | 3 bp (emp.) |",
            "|---|---|" + "---|" * (len(METHODS) + 2)]
    for name, w in data.items():
        for bits in (2, 3, 4, 6, 8):
            uni_mse = np.mean((quantize_uniform(w, bits).dequantize() - w) ** 2)
            ratios = [np.mean((quantize_pwlq(w, bits, 1, m).dequantize() - w) ** 2) / uni_mse for m in METHODS]
            ratios += [np.mean((quantize_pwlq(w, bits, nb, "empirical").dequantize() - w) ** 2) / uni_mse
                       for nb in (2, 3)]
            rows.append(f"| {name} | {bits} | " + " | ".join(f"{r:.3f}" for r in ratios) + " |")
    return "\n".join(rows)


def lemma2_table() -> str:
    rows = ["| fit | bits | bound C(b-1)/16C(b) | worst E_pw/E_uni over m in 2..12 | margin | samples (100k): measured ratio |",
            "|---|---|---|---|---|---|"]
    rng = np.random.default_rng(1)
    for name in DISTRIBUTIONS:
        x = rng.normal(size=100_000) if name == "gaussian" else rng.laplace(size=100_000)
        x /= x.std()
        m_x = np.abs(x).max()
        for bits in (2, 3, 4, 6, 8):
            bound = error_constant(bits - 1) / (16 * error_constant(bits))
            worst = max(expected_error_1bp(optimum(m, name, bits), m, DISTRIBUTIONS[name], bits)
                        / uniform_expected_error(m, bits) for m in M_VALUES)
            p = optimum(m_x, name, bits)
            measured = np.mean((pw(x, bits, m_x, p) - x) ** 2) / np.mean((uni(x, bits, -m_x, m_x, -m_x, False) - x) ** 2)
            rows.append(f"| {name} | {bits} | {bound:.4f} | {worst:.4f} | {bound - worst:.4f} | {measured:.4f} |")
    return "\n".join(rows)


def main() -> None:
    print("## Closed-form breakpoints vs the minimiser of Eq. 4 (4 bits; std units)\n")
    print(closed_form_table())
    print("\n## Weight MSE, PWLQ / uniform (per channel, 64 x 576, no bias correction)\n")
    print(mse_ratio_table())
    print("\n## Lemma 2: E_pw(p*) / E_uni(Eq. 7) against its bound\n")
    print(lemma2_table())


if __name__ == "__main__":
    main()
