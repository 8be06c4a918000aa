"""``compressnet serve``: a local web page and JSON API over the codec."""

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024  # bytes
DEFAULT_MAX_PIXELS = 16_000_000
DEFAULT_TIME_LIMIT = 300.0  # seconds a request may run (a 12-megapixel decode takes about a minute)
