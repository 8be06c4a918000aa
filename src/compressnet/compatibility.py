"""Which files a set of weights reads and writes: format versions, fingerprints, retired weights.

Weights carry up to three latent models (the learned tables, counted tables, a context
network); the richest sets the format of new files, and each file's header carries the
fingerprint of the arrays its version reads, so adding tables or a network to weights keeps
the files they wrote before decodable (docs/format.md). A file from other weights is refused
with a sentence saying which weights wrote it, and which release, if they were retired.
"""

from __future__ import annotations

from compressnet import bitstream, zoo
from compressnet.image import MAX_PIXELS


class CodecError(ValueError):
    """A request the codec cannot serve; the message is meant for users."""


def richest_scheme(has_counted_tables: bool, has_context_net: bool) -> int:
    """The context scheme of new files: 3 with a context network, 2 with counted
    five-neighbour tables, else the learned tables' 1."""
    return 3 if has_context_net else 2 if has_counted_tables else 1


def fingerprints_by_version(scheme_fingerprints: dict[int, bytes], scheme: int) -> dict[int, bytes]:
    """The 2-byte fingerprint of each format version that weights of context ``scheme`` read
    (every version of that scheme or a poorer one)."""
    return {v: scheme_fingerprints[f.context_scheme][:2] for v, f in bitstream.VERSIONS.items()
            if f.context_scheme <= scheme}


def describe_model_id(model_id: int) -> str:
    if model_id == zoo.CUSTOM_MODEL_ID:
        return "a user's weights file (decode it with --model PATH)"
    try:
        return f"model {zoo.by_id(model_id).name}"
    except KeyError:
        return f"an unknown model id {model_id} (from a newer compressnet?)"


def check_header(header: bitstream.Header, model_id: int, name: str,
                 fingerprints: dict[int, bytes], qualities: range) -> None:
    """Refuse a file that these weights (``model_id``, ``name``, their
    :func:`fingerprints_by_version`) did not write, saying which weights did. A user's copy of
    bundled weights (``--model PATH``) reads that model's files, and the other way round: the
    fingerprint, not the model id, says which weights wrote a file."""
    same_weights = header.fingerprint == fingerprints.get(header.version)
    either_custom = zoo.CUSTOM_MODEL_ID in (header.model_id, model_id)
    if header.model_id != model_id and not (same_weights and either_custom):
        raise CodecError(f"file was written with {describe_model_id(header.model_id)}, not {name}")
    if not same_weights:
        release = zoo.retired_release(header.model_id, header.fingerprint)
        if release is not None:
            raise CodecError(
                f"file was written by the {name} weights of compressnet {release} "
                f"(fingerprint {header.fingerprint.hex()}), which this release replaced: decode "
                f"it with compressnet {release}, or pass that release's weights with --model PATH")
        ours = fingerprints.get(header.version, max(fingerprints.items())[1])
        raise CodecError(f"file was written with other weights (fingerprint "
                         f"{header.fingerprint.hex()}) than {name} ({ours.hex()})")
    if header.quality not in qualities:
        raise CodecError(f"file uses quality {header.quality}, which {name} does not have")


def check_declared_size(header: bitstream.Header) -> None:
    """Refuse a header declaring more pixels than any image the codec takes, before any
    allocation sized by it (a corrupted or hostile file)."""
    if header.height * header.width > MAX_PIXELS:
        raise bitstream.BitstreamError(f"file declares {header.width}x{header.height}, above the "
                                       f"limit of {MAX_PIXELS:,} pixels")
