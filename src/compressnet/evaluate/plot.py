"""Rate-distortion plots (PSNR and MS-SSIM against bpp, and LPIPS and DISTS where measured)
from CompressAI-format JSON files."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb")
PANELS = (("psnr-rgb", "PSNR (dB), higher is better"), ("ms-ssim-rgb", "MS-SSIM, higher is better"),
          ("lpips-alex", "LPIPS-Alex, lower is better"), ("lpips-vgg", "LPIPS-VGG, lower is better"),
          ("dists", "DISTS, lower is better"))


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
            max_bpp: float | None = None, title: str = "Rate-distortion",
            references: list[str | Path] = ()) -> Path:
    """PSNR and MS-SSIM against bpp, and a panel for each perceptual metric that some file
    has; one line per file.

    ``references`` (published curves) are drawn thin and dashed.  A hollow marker is
    a matched-rate point where some images could not get down to the target.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [(load_results(p), False) for p in paths] + [(load_results(p), True) for p in references]
    colours = plt.get_cmap("tab20").colors
    panels = [(k, label) for k, label in PANELS
              if k in SCHEMA_KEYS or any(doc["results"].get(k) for doc, _ in docs)]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(6 * cols if cols < 3 else 17, 4.8 * rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    for n, (doc, is_ref) in enumerate(docs):
        r = doc["results"]
        in_range = [(b, i) for i, b in enumerate(r["bpp"]) if max_bpp is None or b <= max_bpp]
        idx = [i for _, i in sorted(in_range)]
        if not idx:
            continue
        bpp = [r["bpp"][i] for i in idx]
        label = f"{doc['name']} (published)" if is_ref else doc["name"]
        style = dict(color=colours[(2 * n + n // 10) % 20],
                     linestyle="--" if is_ref else "-", linewidth=1.0 if is_ref else 2.0)
        above = r.get("above-target") or [0] * len(r["bpp"])
        for ax, (key, _) in zip(axes, panels):
            if not r.get(key):
                continue
            ys = [r[key][i] for i in idx]
            ax.plot(bpp, ys, label=label, marker="." if is_ref else None, **style)
            if not is_ref:
                for x, y, i in zip(bpp, ys, idx):
                    ax.plot([x], [y], marker="o", color=style["color"],
                            markerfacecolor="white" if above[i] else style["color"])
    for ax, (_, ylabel) in zip(axes, panels):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if log_x:
            ax.set_xscale("log")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title + " (hollow: some images above the target rate)")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
