"""Rate-distortion plots (PSNR and MS-SSIM against bpp) from CompressAI-format JSON files."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb")


def load_results(path: str | Path) -> dict:
    """Load and check one result file (``name`` and ``results`` with bpp/psnr-rgb lists)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON results file ({exc})") from None
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict) or "bpp" not in results or "psnr-rgb" not in results:
        raise ValueError(f"{path}: not in CompressAI's results format (needs results.bpp, results.psnr-rgb)")
    if any(len(results[k]) != len(results["bpp"]) for k in SCHEMA_KEYS if k in results):
        raise ValueError(f"{path}: results lists have different lengths")
    doc.setdefault("name", path.stem)
    return doc


def plot_rd(paths: list[str | Path], output: str | Path, log_x: bool = False,
            max_bpp: float | None = None, title: str = "Rate-distortion") -> Path:
    """Two panels, PSNR and MS-SSIM against bpp; one line per file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [load_results(p) for p in paths]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for doc in docs:
        r = doc["results"]
        pts = sorted((b, i) for i, b in enumerate(r["bpp"]) if max_bpp is None or b <= max_bpp)
        if not pts:
            continue
        idx = [i for _, i in pts]
        bpp = [r["bpp"][i] for i in idx]
        ours = not str(doc["name"]).startswith(("compressai-", "paper-")) and doc.get("reference") is not True
        style = dict(marker="o" if ours else ".", linewidth=2.0 if ours else 1.0, alpha=1.0 if ours else 0.7)
        axes[0].plot(bpp, [r["psnr-rgb"][i] for i in idx], label=doc["name"], **style)
        if "ms-ssim-rgb" in r and r["ms-ssim-rgb"]:
            axes[1].plot(bpp, [r["ms-ssim-rgb"][i] for i in idx], label=doc["name"], **style)
    for ax, ylabel in zip(axes, ("PSNR (dB)", "MS-SSIM")):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if log_x:
            ax.set_xscale("log")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
