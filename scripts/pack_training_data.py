"""Pack a folder of training photos into a smaller copy to carry to a GPU machine (whose
upload limit is 64 MiB, the repository included): long sides above ``--max-side`` are
downscaled and every photo is re-encoded once. The bundled sae and swwae models, and the
default's first 6,002 steps, were trained on the first pack below (49 MiB from 113 MB); the
default's later steps on the second (19 MiB, which fits beside a 10 MB resume checkpoint and
the repository's 36 MB). Both compressions are far below what a 0.05 bpp model reproduces.

    python scripts/pack_training_data.py ../shared/data/train .gpu/train --max-side 1024 \
        --quality 85 --subsampling 2
    python scripts/pack_training_data.py ../shared/data/train .gpu/train --max-side 768 \
        --format .webp --quality 62
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from compressnet.image import register_plugins, to_rgb_array
from compressnet.train.data import find_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--max-side", type=int, default=1280)
    parser.add_argument("--format", default=".jpg", choices=[".jpg", ".webp"])
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--subsampling", type=int, default=0, help="0 = 4:4:4, 2 = 4:2:0")
    args = parser.parse_args()
    src, dst = Path(args.src), Path(args.dst)
    total = 0
    register_plugins()  # HEIC and JPEG XL photos too
    for path in find_images(src):
        with Image.open(path) as im:
            im = Image.fromarray(to_rgb_array(im))
        if max(im.size) > args.max_side:
            im.thumbnail((args.max_side, args.max_side), Image.LANCZOS)
        out = dst / path.relative_to(src).with_suffix(args.format)
        out.parent.mkdir(parents=True, exist_ok=True)
        im.save(out, quality=args.quality, subsampling=args.subsampling)
        total += out.stat().st_size
    print(f"{total / 2**20:.1f} MiB in {dst}")


if __name__ == "__main__":
    main()
