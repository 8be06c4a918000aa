"""Same files, same pixels: a sha256 of every compressed file and of its decoded pixels.

Run it with two versions of the code and compare; a change to how the codec computes must
leave both unchanged (the format promises it):

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old/src OMP_NUM_THREADS=1 python scripts/kodak_fingerprints.py \\
        ../shared/data/kodak --out /tmp/old.json
    OMP_NUM_THREADS=1 python scripts/kodak_fingerprints.py ../shared/data/kodak \\
        --out /tmp/new.json --compare /tmp/old.json

Each run states which ``compressnet`` it imported, so a wrong PYTHONPATH shows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

import compressnet
from compressnet.codec import load
from compressnet.image import files_in, open_image


def fingerprints(folder: str, model: str, qualities: list[int], realism: float) -> dict[str, dict]:
    codec = load(model)
    out: dict[str, dict] = {}
    files = files_in(folder)
    for path in tqdm(files, desc="images"):
        pixels = open_image(path)
        for q in qualities:
            data = codec.compress(pixels, quality=q)
            decoded = np.asarray(codec.decompress(data, realism=realism))
            out[f"{Path(path).name}@q{q}"] = {
                "file": hashlib.sha256(data).hexdigest(),
                "pixels": hashlib.sha256(decoded.tobytes()).hexdigest(),
                "bytes": len(data),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--out", required=True)
    p.add_argument("--compare", help="an earlier run's output: exit 1 unless every entry matches")
    p.add_argument("--model", default="sae-spn")
    p.add_argument("--qualities", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--realism", type=float, default=0.0)
    args = p.parse_args(argv)
    print(f"compressnet {compressnet.__version__} from {Path(compressnet.__file__).parent}")
    result = fingerprints(args.folder, args.model, args.qualities, args.realism)
    Path(args.out).write_text(json.dumps(result, indent=1))
    if not args.compare:
        return 0
    before = json.loads(Path(args.compare).read_text())
    differ = sorted(k for k in before.keys() | result.keys() if before.get(k) != result.get(k))
    print(f"{len(result) - len(differ)} of {len(result)} identical (files and pixels)")
    for key in differ:
        print("differs:", key, before.get(key), result.get(key))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
