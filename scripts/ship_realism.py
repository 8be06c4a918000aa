"""Ship a realism decoder run as the bundled one: its fp16 EMA weights with the facts of the run
in the file's metadata, and its log beside the model cards.

    python scripts/ship_realism.py runs/realism [--model sae-spn] [--default-realism 1] \\
        [--hardware "2 CPU cores"] [--command "compressnet train-realism ..."]

writes ``src/compressnet/weights/<model>.realism.safetensors`` and
``docs/cards/logs/<model>-realism.jsonl``. The wall-clock time is the span of the run's log
(resumed runs included, the pauses between them too).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from compressnet import zoo
from compressnet.codec import load
from compressnet.models.io import write_arrays
from compressnet.models.realism import PREFIX, load_realism_decoder

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the train-realism run folder")
    parser.add_argument("--model", default="sae-spn")
    parser.add_argument("--default-realism", type=float, default=1.0)
    parser.add_argument("--hardware", default="2 CPU cores (x86_64)")
    parser.add_argument("--command", default="")
    args = parser.parse_args()
    weights = load_realism_decoder(args.run / "realism.safetensors")
    codec = load(args.model)  # refuses a decoder trained behind other weights
    codec.attach_realism(args.run / "realism.safetensors")
    records = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines() if line]
    meta = {**weights.metadata, "default_realism": f"{args.default_realism:g}",
            "train_seconds": f"{records[-1]['time'] - records[0]['time']:.0f}",
            "hardware": args.hardware, "data": "../shared/data/train (BSDS500, Urban100, 49 Wikimedia "
            "photos), scaled to at most 768 px a side", "command": args.command}
    out = zoo.weights_dir() / f"{codec.name}.realism.safetensors"
    arrays = {PREFIX + k: v.astype(np.float16) for k, v in weights.arrays.items()}
    write_arrays(out, arrays, {k: str(v) for k, v in meta.items()})
    logs = ROOT / "docs" / "cards" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / "log.jsonl", logs / f"{codec.name}-realism.jsonl")
    print(f"wrote {out} ({out.stat().st_size:,} bytes; {meta['steps']} steps, "
          f"{float(meta['train_seconds']) / 3600:.1f} h) and {logs / f'{codec.name}-realism.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
