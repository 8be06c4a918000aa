"""Compare training runs by their last held-out validation (real bytes, 8 held-out photos).

Reads JSON lines with a ``run`` field and a ``val`` record, as
``docs/cards/logs/sae-spn-lite.variants.jsonl`` holds for the runs that chose the 0.2.0 default
model, and prints one row per run and number of channels kept:

    python benchmarks/training_variants.py [docs/cards/logs/sae-spn-lite.variants.jsonl]

Runs that trained without the colour layer were validated without it. To score a checkpoint
with the layer on the same held-out photos (``DATA``'s split, as training made it), and add the
record to the file:

    python benchmarks/training_variants.py --validate NAME=CKPT --data .gpu/train
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "docs" / "cards" / "logs" / "sae-spn-lite.variants.jsonl"


def last_validation(path: Path) -> dict[str, tuple[int, dict]]:
    """Per run, its last step with a validation record and that record."""
    last: dict[str, tuple[int, dict]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "val" in record and record["step"] >= last.get(record["run"], (-1, {}))[0]:
            last[record["run"]] = (record["step"], record["val"])
    return last


def validate_with_layer(checkpoint: str, data: str) -> tuple[int, dict]:
    """The checkpoint's step and its held-out validation with the colour layer."""
    import torch

    from compressnet.models.autoencoder import DOWNSAMPLING
    from compressnet.train.data import CropDataset
    from compressnet.train.export import model_from_checkpoint
    from compressnet.train.loop import TrainConfig, split_files, validate

    _, held_out = split_files(TrainConfig(data=data))
    images = [torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255)
              for a in CropDataset(held_out, DOWNSAMPLING, progress=False).images]
    step = torch.load(checkpoint, map_location="cpu", weights_only=False)["step"]
    return step, validate(model_from_checkpoint(checkpoint), images, [3, 4, 8, 16], colour=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--validate", nargs="*", default=[], metavar="NAME=CKPT",
                        help="score checkpoints with the colour layer and add them to LOG")
    parser.add_argument("--data", default=".gpu/train", help="the runs' training folder")
    args = parser.parse_args()
    path = args.log
    for item in args.validate:
        name, checkpoint = item.split("=", 1)
        step, val = validate_with_layer(checkpoint, args.data)
        with path.open("a") as f:
            f.write(json.dumps({"run": name, "step": step, "val": val}) + "\n")
    print("| run | step | channels | bpp | PSNR (dB) | MS-SSIM |")
    print("|---|---|---|---|---|---|")
    for run, (step, val) in last_validation(path).items():
        for key, v in sorted(val.items(), key=lambda kv: int(kv[0][1:])):
            ms_ssim = f"{v['ms_ssim']:.4f}" if "ms_ssim" in v else "-"
            print(f"| {run} | {step} | {key[1:]} | {v['bpp']:.4f} | {v['psnr']:.2f} | {ms_ssim} |")


if __name__ == "__main__":
    main()
