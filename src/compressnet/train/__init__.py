"""Training: data, losses and the loop (``compressnet train``)."""
