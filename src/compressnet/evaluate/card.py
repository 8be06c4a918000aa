"""Write a model card: training facts from the weights file, Kodak results, decoded crops.

    compressnet card sae-spn --data ../shared/data/kodak --out docs/cards

writes ``docs/cards/<model>.md`` (+ ``<model>.json`` results, or with ``--ship`` the bundled
``weights/<model>.kodak.json``, and crop PNGs) from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from compressnet import zoo
from compressnet.codec import load
from compressnet.evaluate import compare
from compressnet.image import files_in, open_image

CROP = (256, 192)  # width, height of the side-by-side crops
CROP_IMAGES = ("kodim23.png", "kodim05.png", "kodim14.png")


def side_by_side(codec, path: Path, qualities: list[int], out: Path) -> Path:
    """Original and each quality's decoding of a centre crop, left to right."""
    pixels = open_image(path)
    h, w = pixels.shape[:2]
    top, left = (h - CROP[1]) // 2, (w - CROP[0]) // 2
    tiles = [pixels[top:top + CROP[1], left:left + CROP[0]]]
    for q in qualities:
        decoded = codec.decompress_array(codec.compress(pixels, quality=q))
        tiles.append(decoded[top:top + CROP[1], left:left + CROP[0]])
    gap = np.full((CROP[1], 4, 3), 255, np.uint8)
    row = np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)
    Image.fromarray(row).save(out)
    return out


def _shown(path: Path, base: Path) -> str:
    """``path`` relative to the card's folder where it can be (how the card links to it)."""
    try:
        return os.path.relpath(path.resolve(), base.resolve())
    except ValueError:  # another drive
        return str(path)


PROG = "compressnet card"  # `python -m compressnet.evaluate.card` works too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True, help="evaluation folder (Kodak)")
    parser.add_argument("--out", default="docs/cards")
    parser.add_argument("--command", default="", help="the training command, for the record")
    parser.add_argument("--no-perceptual", action="store_true",
                        help="skip LPIPS and DISTS (two VGG16 passes a decoded image: most of the time)")
    parser.add_argument("--ship", action="store_true",
                        help="also write the results beside the bundled weights (for `compressnet models`)")
    args = parser.parse_args(argv)
    codec = load(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = files_in(args.data)
    from compressnet import perceptual

    why_not = "--no-perceptual" if args.no_perceptual else perceptual.unavailable()
    with tempfile.TemporaryDirectory() as tmp:  # the same pipeline as `compressnet eval`, uncached
        items = compare.run_learned(codec, files, list(codec.qualities), compare.Cache(Path(tmp)),
                                    switches=True, built_in=not args.no_perceptual)
    rows = [row for row, _ in items]
    doc = compare.summarize(rows)[compare.learned_name(codec)]
    doc["description"] = f"{codec.name} on {args.data}, real file bytes; mean per quality"
    # one copy: beside the weights (where `compressnet models` reads it) when shipped
    json_path = zoo.kodak_results_path(codec.name) if args.ship else out / f"{codec.name}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    compare.write_csv(rows, out / f"{codec.name}.csv")
    table = compare.format_table({codec.name: doc}, details=True)
    crops = [side_by_side(codec, Path(args.data) / name, list(codec.qualities),
                          out / f"{codec.name}-{Path(name).stem}.png")
             for name in CROP_IMAGES if (Path(args.data) / name).is_file()]
    meta = codec.metadata
    cfg = codec.cfg
    hours = float(meta.get("train_seconds", 0)) / 3600
    lines = [
        f"# Model card: {codec.name}",
        "",
        f"- Architecture: {cfg.arch} ({cfg.preset} preset), encoder widths {list(cfg.enc_widths)}, "
        f"{cfg.res_blocks} residual blocks of width {cfg.res_width}, C={cfg.latent_channels} latent "
        f"channels, {cfg.levels} levels.",
        f"- Qualities (latent channels sent): {list(cfg.qualities)}.",
        f"- Training: {meta.get('steps', '?')} steps, {hours:.1f} h wall-clock on "
        f"{meta.get('hardware', '2 CPU cores')}; data: {meta.get('data', 'shared/data/train')}.",
        f"- Command: `{args.command or meta.get('command', '(not recorded)')}`",
        f"- Entropy coding: format version {codec.version_written()}, "
        + (f"context tables counted after training ({meta['context_tables']}; "
           "`compressnet fit-entropy`)" if "context_tables" in meta
           else "the context tables learned in training")
        + (f"; a context network for the latent ({meta['context_net']})" if "context_net" in meta
           else "") + "; a colour layer of block means "
        f"(blocks of {', '.join(str(codec.colour_block(q)) for q in codec.qualities)} pixels at "
        f"qualities {codec.qualities[0]} to {codec.qualities[-1]}, `compressnet.colour_layer`)"
        + ("" if codec.writes_colour_layer else ", left out here (`--no-colour-layer`)")
        + "; decoded with exact fixed-point arithmetic (the same pixels on every machine).",
        f"- Fingerprint: {codec.fingerprint.hex()}",
        "",
        f"## Results on {len(files)} images of `{args.data}` (real file bytes)",
        "",
        table,
        "",
        "LPIPS-Alex, LPIPS-VGG and DISTS: lower is better (`compressnet.perceptual`)."
        if not why_not else f"LPIPS and DISTS not measured here ({why_not}).",
        "",
        f"Regenerate: `compressnet card {args.model} --data {args.data} --out {args.out}"
        f"{' --no-perceptual' if args.no_perceptual else ''}{' --ship' if args.ship else ''}`",
        f"(results: `{_shown(json_path, out)}`).",
        "",
        "## Decoded crops",
        "",
        "Left to right: original, then qualities " + ", ".join(str(q) for q in codec.qualities) + ".",
        "",
    ]
    lines += [f"![{c.stem}]({c.name})" for c in crops]
    card = out / f"{codec.name}.md"
    card.write_text("\n".join(lines) + "\n")
    print(table)
    print(f"wrote {card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
