"""Write the golden files of ``tests/data``: one ``.cnet`` file per format version that the
tests decode, written by the bundled default model, and its decoded pixels (``.png``).

Run it when the bundled default's weights change, after moving the old files to
``tests/data/<last release that bundled them>/`` and adding their fingerprints to
``compressnet.zoo.RETIRED`` (the tests check that they are refused with that pointer), or when
only latent models were added (``compressnet fit-entropy``): then the files of the
older versions come out byte for byte as they were, and only the new versions' are added.

    python scripts/make_golden_files.py --force

Version 9's file is also decoded at realism 0.5 and 1 with the bundled realism decoder
(``-v9-realism*.png``). Versions 9 and 8 come from the bundled weights (7 is 9's payload under
a version 7 header, as this release's encoder wrote them before version 9); 6 and 4 from the same
weights without their context network (``context_net.*``), as 0.2.0 to 0.4.0 wrote them.
Versions 1 and 2 are no longer written. Their payloads are those of versions 3 and 4 (the same
context tables; 1 and 2 decode them in float32), so their files are those payloads under
version 1 and 2 headers; version 1's payload comes from the weights without counted tables,
as such files did.
"""

from __future__ import annotations

import argparse
import tempfile
from importlib import resources
from pathlib import Path

from PIL import Image

import compressnet
from compressnet import bitstream, zoo
from compressnet.codec import load_for_header
from compressnet.image import open_image
from compressnet.models.context_net import PREFIX as CONTEXT_NET
from compressnet.models.io import FORMAT2_ONLY, copy_without

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(str(resources.files("compressnet") / "samples" / "kodim23.png"))
QUALITY = 4
REALISM_GOLDEN = (0.5, 1.0)  # the realism decoder's golden pixels (a blend and the end)


def _relabel(data: bytes, **fields: int) -> bytes:
    header, payload = bitstream.unpack(data)
    return bitstream.pack(header._replace(**fields), payload)


def golden_files() -> dict[int, bytes]:
    """Format version -> bytes of the default model's file of the sample's crop."""
    codec = compressnet.load()
    pixels = open_image(SAMPLE)
    corner, middle = pixels[:128, :192], pixels[200:320, 300:500]  # 6: sides off the blocks
    files = {9: codec.compress(middle, QUALITY), 8: codec.compress(corner, QUALITY, colour=False)}
    files[7] = _relabel(files[9], version=7)  # the same payload, the bilinear colour correction
    with tempfile.TemporaryDirectory() as tmp:
        entry = zoo.lookup(zoo.DEFAULT_MODEL)
        bundled = zoo.bundled_path(entry)

        def load_without(names: tuple[str, ...], stem: str) -> compressnet.Codec:
            return compressnet.load(str(copy_without(bundled, Path(tmp) / stem, names, CONTEXT_NET)))

        counted = load_without((), "counted.safetensors")
        files[6] = _relabel(counted.compress(middle, QUALITY), model_id=entry.model_id)
        files[4] = _relabel(counted.compress(corner, QUALITY, colour=False), model_id=entry.model_id)
        files[2] = _relabel(files[4], version=2)
        plain = load_without(FORMAT2_ONLY, "plain.safetensors")
        files[1] = _relabel(plain.compress(corner, QUALITY, colour=False), version=1,
                            model_id=entry.model_id)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data")
    parser.add_argument("--force", action="store_true", help="overwrite existing golden files")
    args = parser.parse_args()
    name = compressnet.load().name
    for version, data in sorted(golden_files().items()):
        stem = args.out / f"{name}-v{version}"
        if stem.with_suffix(".cnet").exists() and not args.force:
            raise SystemExit(f"{stem}.cnet exists: pass --force to replace it")
        codec = load_for_header(data)
        decoded = codec.decompress_array(data)
        stem.with_suffix(".cnet").write_bytes(data)
        Image.fromarray(decoded).save(stem.with_suffix(".png"))
        print(f"wrote {stem}.cnet ({len(data)} bytes) and .png")
        if version == 9 and codec.realism:  # the realism decoder's pixels of the same file
            for realism in REALISM_GOLDEN:
                out = args.out / f"{name}-v{version}-realism{realism:g}.png"
                Image.fromarray(codec.decompress_array(data, realism=realism)).save(out)
                print(f"wrote {out}")


if __name__ == "__main__":
    main()
