"""Bjontegaard delta rate: the mean bitrate difference at equal quality (VCEG-M33)."""

from __future__ import annotations

import numpy as np


def _log_rate_integral(metric: np.ndarray, log_rate: np.ndarray, lo: float, hi: float) -> float:
    order = np.argsort(metric)
    metric, log_rate = metric[order], log_rate[order]
    if len(metric) >= 4:  # the classic cubic fit of log-rate against quality
        poly = np.polyint(np.polyfit(metric, log_rate, 3))
        return float(np.polyval(poly, hi) - np.polyval(poly, lo))
    grid = np.linspace(lo, hi, 201)  # too few points for a cubic: piecewise linear
    return float(np.trapezoid(np.interp(grid, metric, log_rate), grid))


def bd_rate(anchor_rate, anchor_metric, test_rate, test_metric) -> float:
    """Percent rate change of ``test`` against ``anchor`` over their overlapping quality range.

    Negative means ``test`` needs fewer bits for the same quality.  Raises
    ValueError when the curves do not overlap or have fewer than two points.
    """
    ar, am = np.log(np.asarray(anchor_rate, float)), np.asarray(anchor_metric, float)
    tr, tm = np.log(np.asarray(test_rate, float)), np.asarray(test_metric, float)
    if min(len(ar), len(tr)) < 2:
        raise ValueError("BD-rate needs at least two points per curve")
    lo, hi = max(am.min(), tm.min()), min(am.max(), tm.max())
    if hi <= lo:
        raise ValueError("the curves do not overlap in quality")
    diff = (_log_rate_integral(tm, tr, lo, hi) - _log_rate_integral(am, ar, lo, hi)) / (hi - lo)
    return float((np.exp(diff) - 1) * 100)


def compare_curves(anchor: dict, test: dict, anchor_label: str, test_label: str) -> list[str]:
    """Markdown lines: two CompressAI-format ``results`` side by side per quality, then the
    BD-rate of ``test`` against ``anchor`` on PSNR and MS-SSIM (``-`` where they do not
    overlap). Both must cover the same qualities, in the same order; rows are labelled with
    their ``quality`` list where either has one."""
    if len(anchor["bpp"]) != len(test["bpp"]):
        raise ValueError("the two results do not cover the same qualities")
    columns = [f"{what} {label}" for label in (anchor_label, test_label)
               for what in ("bpp", "PSNR", "MS-SSIM")]
    lines = ["| quality | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    qualities = test.get("quality") or anchor.get("quality") or range(1, len(test["bpp"]) + 1)
    for i, quality in enumerate(qualities):
        cells = [f"{r['bpp'][i]:.4f} | {r['psnr-rgb'][i]:.2f} | {r['ms-ssim-rgb'][i]:.4f}"
                 for r in (anchor, test)]
        lines.append(f"| {quality} | {cells[0]} | {cells[1]} |")
    lines.append("")
    for key, label in (("psnr-rgb", "PSNR"), ("ms-ssim-rgb", "MS-SSIM")):
        lines.append(f"- BD-rate ({label}) of {test_label} against {anchor_label}: "
                     f"{bd_rate_text(anchor, test, key)}")
    return lines


def bd_rate_text(anchor: dict, test: dict, key: str) -> str:
    """The BD-rate of two CompressAI-format ``results`` on metric ``key`` as text ("-12.3%"),
    or "- (why)" where it cannot be computed."""
    try:
        return f"{bd_rate(anchor['bpp'], anchor[key], test['bpp'], test[key]):+.1f}%"
    except ValueError as exc:
        return f"- ({exc})"
