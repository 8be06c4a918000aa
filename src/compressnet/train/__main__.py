"""``python -m compressnet.train``: the training entry point (also used by torchrun)."""

from __future__ import annotations

import sys

from compressnet.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
