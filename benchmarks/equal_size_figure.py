"""The README's figure: centre crops of Kodak photos at equal file size, CompressNet (its
faithful and its realism decoder, the same file) beside HEVC-intra, AVIF, both on a half-size
copy, and JPEG, each classical file the largest that is not above CompressNet's.

    python benchmarks/equal_size_figure.py [--rows kodim23:1 kodim05:3 kodim14:5] [-o docs/equal-size.png]

Crops are shown pixel for pixel (256x256, no resampling); the labels score the whole image
(PSNR, MS-SSIM, and LPIPS-VGG and DISTS: lower is better).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import compressnet  # noqa: E402
from compressnet.evaluate.report import CROP, equal_size_crops  # noqa: E402
from compressnet.image import open_image  # noqa: E402
from compressnet.perceptual import PerceptualScorer  # noqa: E402

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
DPI = 100
CAPTION_IN = 0.85  # inches of caption under each crop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=["kodim23:1", "kodim05:3", "kodim14:5"],
                        help="IMAGE:QUALITY per row")
    parser.add_argument("--data", default=str(KODAK))
    parser.add_argument("--model", default="sae-spn")
    parser.add_argument("-o", "--output", default="docs/equal-size.png")
    args = parser.parse_args()
    codec = compressnet.load(args.model)
    scorer = PerceptualScorer()
    rows = []
    for row in args.rows:
        name, quality = row.split(":")
        crops = equal_size_crops(codec, open_image(Path(args.data) / f"{name}.png"), int(quality),
                                 scorer=scorer)
        rows.append((name, crops))
        for crop in crops[1:]:
            print(f"{name}  {crop.label}")
    cols = max(len(crops) for _, crops in rows)
    side = CROP / DPI
    cell_h = side + CAPTION_IN
    fig = plt.figure(figsize=(cols * side, len(rows) * cell_h), dpi=DPI)
    for r, (name, crops) in enumerate(rows):
        for c, crop in enumerate(crops):
            bottom = 1 - (r * cell_h + side) / (len(rows) * cell_h)
            ax = fig.add_axes((c / cols, bottom, 1 / cols, side / (len(rows) * cell_h)))
            ax.imshow(crop.pixels, interpolation="none")
            ax.set_axis_off()
            p = crop.perceptual or {}
            text = f"{name}, original" if not crop.bytes else (
                f"{crop.name}\n{crop.bytes} B, {crop.bpp:.3f} bpp\n{crop.psnr:.2f} dB, MS-SSIM "
                f"{crop.ms_ssim:.3f}\nLPIPS-VGG {p.get('lpips-vgg', float('nan')):.3f}, DISTS "
                f"{p.get('dists', float('nan')):.3f}"
                + ("" if crop.fits else "\n(its smallest file: larger)"))
            ax.text(0.5, -0.02, text, transform=ax.transAxes, ha="center", va="top", fontsize=7)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=DPI)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
