"""CompressNet: generative image compression at extremely low bitrates.

>>> import compressnet
>>> codec = compressnet.load("sae-spn")           # the bundled default (lite preset)
>>> data = codec.compress("photo.png", quality=1)  # bytes of a .cnet file
>>> image = codec.decompress(data)                 # a PIL image
"""

import os

# OpenMP threads that spin while they wait for work hold a core each: on a machine whose cores
# other processes use, a decode with the default 2 threads took 27 s against 6 s on one thread
# (benchmarks/load.py). On free cores it costs little (docs/evaluation.md: a Kodak decode within
# noise, a 12-megapixel one 8% slower), far less than the collapse it prevents. It must be set
# before torch loads its OpenMP runtime, so here, before the codec imports torch; a user's own
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from compressnet.codec import Codec, CodecError, load, preview_array  # noqa: E402

__version__ = "0.9.2"  # the one version string (pyproject.toml reads it)
__all__ = ["Codec", "CodecError", "load", "preview_array", "__version__"]
