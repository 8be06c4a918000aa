"""CompressNet: generative image compression at extremely low bitrates.

>>> import compressnet
>>> codec = compressnet.load("sae-spn")           # the bundled default (lite preset)
>>> data = codec.compress("photo.png", quality=1)  # bytes of a .cnet file
>>> image = codec.decompress(data)                 # a PIL image
"""

from compressnet.codec import Codec, CodecError, load, preview_array

__version__ = "0.8.0"
__all__ = ["Codec", "CodecError", "load", "preview_array", "__version__"]
