"""How far the exact fixed-point decoder (format 4) lands from the float32 one (format 2).

    python benchmarks/exact_vs_float.py [--image ../shared/data/kodak/kodim23.png] [--quality 3]

Encodes the image once without the colour layer (format 4), decodes it, and decodes the same
payload under a version-2 header (float32 arithmetic); prints how many decoded values differ
and by how much. Weights with a context network are used without it here (float formats
code the latent with the counted tables): the decoder network is the same.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import compressnet
from compressnet import bitstream
from compressnet.image import open_image
from compressnet.models.context_net import PREFIX as CONTEXT_NET
from compressnet.models.io import copy_without

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"))
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--model", default="sae-spn")
    args = parser.parse_args()
    codec = compressnet.load(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        if codec.context_net is not None:  # float formats code the latent with the counted tables
            counted = copy_without(codec.weights_path, Path(tmp) / "counted.safetensors",
                                   prefix=CONTEXT_NET)
            codec = compressnet.load(str(counted))
        compare(codec, args)


def compare(codec: compressnet.Codec, args: argparse.Namespace) -> None:
    exact_file = codec.compress(open_image(args.image), args.quality, colour=False)
    header, payload = bitstream.unpack(exact_file)
    float_file = bitstream.pack(header._replace(version=2), payload)
    exact = codec.decompress_array(exact_file).astype(int)
    as_float = codec.decompress_array(float_file).astype(int)
    diff = np.abs(exact - as_float)
    print(f"{codec.name} q{args.quality} on {Path(args.image).name}: {int((diff > 0).sum()):,} of "
          f"{diff.size:,} values differ, by at most {int(diff.max())}")


if __name__ == "__main__":
    main()
