"""The ``compressnet`` command: a thin shell over the Python API.

Every error ends as one line on stderr (``compressnet: error: ...``) and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
from tqdm import tqdm

from compressnet import __version__, bitstream, zoo
from compressnet.codec import Codec, CodecError, load, load_for_header, preview_array
from compressnet.image import IMAGE_SUFFIXES, ImageError, files_in, open_image
from compressnet.io_utils import OutputExistsError, image_bytes, output_format, write_atomic
from compressnet.metrics import psnr

CNET_SUFFIX = ".cnet"


def _expand(inputs: list[str], suffixes: set[str], kind: str) -> list[str]:
    """The inputs, with each folder replaced by the files in it (not its sub-folders) whose
    suffix is one of ``suffixes``, sorted; a folder without any is an error."""
    files: list[str] = []
    for given in inputs:
        if not Path(given).is_dir():
            files.append(given)
            continue
        try:
            files += [str(p) for p in files_in(given, suffixes, kind=kind)]
        except FileNotFoundError as exc:
            raise CodecError(str(exc)) from None
    return files


def _outputs(inputs: list[str], out: str | None, out_dir: str | None, make_name) -> list[Path]:
    if out and len(inputs) > 1:
        raise CodecError("-o takes a single input; use --out-dir for several")
    if out:
        return [Path(out)]
    outputs = [(Path(out_dir) if out_dir else Path(i).parent) / make_name(Path(i)) for i in inputs]
    seen: dict[Path, str] = {}
    for src, dst in zip(inputs, outputs):
        if dst.resolve() in seen:
            raise CodecError(f"{seen[dst.resolve()]} and {src} would both be written to {dst}")
        seen[dst.resolve()] = src
    return outputs


# What one input can go wrong with; a run over several reports it and goes on with the others.
INPUT_ERRORS = (CodecError, ImageError, bitstream.BitstreamError, OSError, ValueError)


def _each_input(inputs: list[str], outputs: list[Path], work: Callable[[str, Path], None]) -> int:
    """``work(src, dst)`` for every input. A bad one is one error line and the rest still run
    (a folder of 500 photos with one truncated file loses only that file); exit status 1 if any
    failed, with a count when there were several."""
    failed = 0
    for src, dst in zip(inputs, outputs):
        try:
            work(src, dst)
        except INPUT_ERRORS as exc:
            print(f"compressnet: error: {exc}", file=sys.stderr)
            failed += 1
    if failed and len(inputs) > 1:
        print(f"compressnet: {failed} of {len(inputs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _refuse_existing(dst: Path, force: bool) -> None:
    """Before minutes of work, not after: an output that exists is refused without --force."""
    if not force and dst.exists():
        raise OutputExistsError(17, "exists", str(dst))


def _quality(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"quality must be 1 or more, not {value}")
    return value


def _bpp(text: str) -> float:
    value = float(text)
    if not 0 < value < 64:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"bits per pixel must be a number above 0, not {text}")
    return value


def cmd_compress(args: argparse.Namespace) -> int:
    if args.refine_realism and not args.refine:
        raise CodecError("--refine-realism steers --refine's search: give --refine STEPS too")
    codec = load(args.model)
    codec.writes_colour_layer = not args.no_colour_layer
    codec.validate_realism(args.refine_realism)  # before any image is read
    inputs = _expand(args.inputs, IMAGE_SUFFIXES, "images")
    outputs = _outputs(inputs, args.output, args.out_dir, lambda p: p.stem + CNET_SUFFIX)

    def compress_one(src: str, dst: Path) -> None:
        _refuse_existing(dst, args.force)
        pixels = open_image(src)
        # a large photo's encoder tiles and refinement's steps take seconds each: bars on a
        # terminal, nothing in a pipe
        count = codec.tile_count(*pixels.shape[:2])
        with tqdm(total=count, desc=f"encoding {Path(src).name}", unit="tile", leave=False,
                  disable=None if count > 1 else True) as tile_bar, \
                tqdm(total=args.refine, desc=f"refining {Path(src).name}", unit="step", leave=False,
                     disable=None if args.refine else True) as bar:
            bars = dict(on_step=bar.update, on_tile=lambda done, total: tile_bar.update(1))
            if args.target_bpp is not None:
                result = codec.encode_to_target(pixels, args.target_bpp, args.refine, **bars,
                                                refine_realism=args.refine_realism)
            else:
                result = codec.encode(pixels, args.quality, args.refine, **bars,
                                      refine_realism=args.refine_realism)
        write_atomic(dst, result.data, force=args.force)
        print(f"{src} -> {dst}: {len(result.data)} bytes, {result.bpp:.4f} bpp, "
              f"{codec.name} q{result.quality}")

    return _each_input(inputs, outputs, compress_one)


def _read_bitstream(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise CodecError(f"{path}: no such file")
    return p.read_bytes()


def cmd_decompress(args: argparse.Namespace) -> int:
    inputs = _expand(args.inputs, {CNET_SUFFIX}, f"{CNET_SUFFIX} files")
    kind = "preview" if args.preview else "decoded"
    outputs = _outputs(inputs, args.output, args.out_dir,
                       lambda p: (p.name[: -len(CNET_SUFFIX)] if p.name.endswith(CNET_SUFFIX)
                                  else p.name) + f".{kind}.{args.format}")
    for dst in outputs:
        output_format(dst)  # a name that no format fits fails before minutes of decoding
    codecs: dict[int, Codec] = {}

    def preview_one(src: str, dst: Path) -> None:
        try:
            pixels = preview_array(_read_bitstream(src))
        except bitstream.BitstreamError as exc:
            raise CodecError(f"{src}: {exc}") from None
        write_atomic(dst, image_bytes(pixels, dst), force=args.force)
        print(f"{src} -> {dst}: {pixels.shape[1]}x{pixels.shape[0]} colour blocks")

    def decompress_one(src: str, dst: Path) -> None:
        _refuse_existing(dst, args.force)
        data = _read_bitstream(src)
        try:
            header, _ = bitstream.unpack(data)
            if header.model_id not in codecs:
                codecs[header.model_id] = load_for_header(data, args.model)
                if args.realism_decoder:
                    codecs[header.model_id].attach_realism(args.realism_decoder)
            codec = codecs[header.model_id]
            realism = codec.default_realism if args.realism is None else args.realism
            # a large image decodes in tiles for a minute or more: a bar on a terminal
            count = codec.tile_count(header.height, header.width)
            with tqdm(total=count, desc=f"decoding {Path(src).name}", unit="tile", leave=False,
                      disable=None if count > 1 else True) as bar:
                pixels = codec.decompress_array(data, on_tile=lambda done, total: bar.update(1),
                                                realism=realism)
        except bitstream.BitstreamError as exc:
            raise CodecError(f"{src}: {exc}") from None
        write_atomic(dst, image_bytes(pixels, dst), force=args.force)
        print(f"{src} -> {dst}: {header.width}x{header.height}, realism {realism:g}")

    return _each_input(inputs, outputs, preview_one if args.preview else decompress_one)


def cmd_info(args: argparse.Namespace) -> int:
    for src in _expand(args.inputs, {CNET_SUFFIX}, f"{CNET_SUFFIX} files"):
        data = _read_bitstream(src)
        try:
            header, _ = bitstream.unpack(data)
        except bitstream.BitstreamError as exc:
            raise CodecError(f"{src}: {exc}") from None
        try:
            model = zoo.by_id(header.model_id).name
        except KeyError:
            model = "user weights file" if header.model_id == zoo.CUSTOM_MODEL_ID else \
                f"unknown id {header.model_id}"
        bpp = len(data) * 8 / (header.width * header.height)
        print(f"{src}: model {model}, quality {header.quality}, {header.width}x{header.height}, "
              f"{len(data)} bytes, {bpp:.4f} bpp, format v{header.version} "
              f"({bitstream.describe(header.version)}), weights {header.fingerprint.hex()}"
              + (f" (replaced: those of compressnet {release})"
                 if (release := zoo.retired_release(header.model_id, header.fingerprint)) else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    for entry in zoo.REGISTRY:
        if not zoo.is_bundled(entry):
            print(f"{entry.name:16s} (id {entry.model_id}): not bundled in this release")
            continue
        codec = load(entry.name)
        default = " [default]" if entry.arch == zoo.DEFAULT_MODEL and entry.preset == zoo.DEFAULT_PRESET \
            else ""
        realism = (f"; a realism decoder ({codec.realism.metadata.get('steps', '?')} steps; decompress "
                   f"uses realism {codec.default_realism:g} unless told)" if codec.realism else "")
        print(f"{entry.name} (id {entry.model_id}){default}, {codec.cfg.arch} {codec.cfg.preset}{realism}:")
        measured = zoo.kodak_results(entry)
        for q in codec.qualities:
            line = (f"  q{q}: {codec.channels_sent(q):2d} latent channels (fixed-length bound "
                    f"{codec.fixed_length_bpp(q, 512, 768):.4f} bpp), colour blocks of "
                    f"{codec.colour_block(q)} px")
            if measured and q in measured:
                bpp, db, msssim = measured[q]
                line += f"; Kodak: {bpp:.4f} bpp, {db:.2f} dB, MS-SSIM {msssim:.4f}"
            print(line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    sample = Path(str(resources.files("compressnet") / "samples" / "kodim23.png"))
    codec = load(args.model)
    pixels = open_image(sample)
    result = codec.encode(pixels, args.quality)
    out_dir = Path(args.out_dir)
    cnet = write_atomic(out_dir / "kodim23.cnet", result.data, force=args.force)
    written = [cnet]
    realisms = [0.0] + ([codec.default_realism] if codec.default_realism else [])
    h, w = pixels.shape[:2]
    print(f"sample {sample.name} ({w}x{h}) with {codec.name} q{result.quality}: "
          f"{len(result.data)} bytes, {result.bpp:.4f} bpp "
          f"(fixed-length bound {result.fixed_length_bpp:.4f})")
    for realism in realisms:  # what decompress writes by default last, as kodim23.decoded.png
        decoded = codec.decompress_array(cnet.read_bytes(), realism=realism)
        name = "kodim23.decoded.png" if realism == realisms[-1] else "kodim23.faithful.png"
        written.append(write_atomic(out_dir / name, image_bytes(decoded), force=args.force))
        print(f"  decoded with realism {realism:g} -> {written[-1]}: PSNR {psnr(pixels, decoded):.2f} dB")
    print("wrote " + ", ".join(map(str, written)))
    return 0


def _codec_available(name: str, notes: list[str]) -> bool:
    """Whether a classical codec can run here; a warning (and a report note) when not."""
    from compressnet.evaluate import classical

    why = classical.available(name)
    if why:
        print(f"compressnet: warning: skipping {why}", file=sys.stderr)
        notes.append(f"skipped: {why}")
    return not why


def _eval_learned(args: argparse.Namespace, codecs: list[Codec], files: list[Path], cache,
                  scorer_paths: tuple) -> tuple[list, dict[str, tuple] | None]:
    """The models' rows at every realism asked for, and with ``--equal-bytes`` each image's
    (quality, file bytes) budgets for the classical codecs (the first model's files: they are
    the same at every realism)."""
    from compressnet.evaluate import compare

    items: list = []
    budgets: dict[str, tuple] | None = {} if args.equal_bytes else None
    for i, codec in enumerate(codecs):
        for j, realism in enumerate(args.realism):
            rows = compare.run_learned(codec, files, args.qualities or list(codec.qualities), cache,
                                       progress=not args.no_progress, scorer_paths=scorer_paths,
                                       refine=args.refine, realism=realism)
            items += rows
            if budgets is not None and i == 0 and j == 0:
                for row, _ in rows:
                    budgets[row.image] = (*budgets.get(row.image, ()), (row.point, row.bytes))
    return items, budgets


def cmd_eval(args: argparse.Namespace) -> int:
    from compressnet.evaluate import classical, compare, perceptual, report
    from compressnet.evaluate.plot import plot_rd

    files = files_in(args.folder)
    if args.limit:
        files = files[: args.limit]
    out = Path(args.out_dir)
    scorer_paths = (args.lpips_backbone, args.lpips_lin, args.dists_weights, args.fid_model)
    if any(scorer_paths):
        compare.Scorer(*scorer_paths)  # fail early, with one clear line, on a bad weights file
    cache = compare.Cache(out / "cache", tag=compare.scorer_tag(scorer_paths))
    codecs = [load(m) for m in args.models]
    for codec in codecs:
        codec.writes_colour_layer = not args.no_colour_layer
        if args.realism_decoder:
            codec.attach_realism(args.realism_decoder)
    if args.equal_bytes and not codecs:
        raise CodecError("--equal-bytes matches the classical codecs to a model's files: name one")
    items, budgets = _eval_learned(args, codecs, files, cache, scorer_paths)
    notes = [classical.BPG_NOTE]
    names = [name for name in args.codecs if _codec_available(name, notes)]
    items += compare.run_classical(names, files, tuple(args.target_bpp), cache, args.workers,
                                   progress=not args.no_progress, scorer_paths=scorer_paths,
                                   budgets=budgets)
    rows = [row for row, _ in items]
    distribution = compare.distribution_metrics(items, files, scorer_paths) if args.fid_model else {}
    paths = compare.write_outputs(rows, out, distribution)
    docs = compare.summarize(rows, distribution)
    print(f"{len(files)} images of {args.folder}"
          + (f"; each classical file the largest not above {codecs[0].name}'s" if budgets else "") + ":")
    print(compare.format_table(docs, by_point=budgets is not None))
    for line in perceptual.availability(*scorer_paths):
        print(line)
        notes.append(line)
    plot = plot_rd(paths, out / "rd.png", log_x=args.log_x, max_bpp=args.max_bpp, references=args.reference)
    anchor = args.anchor if args.anchor in docs else None
    if anchor:
        for name, on_psnr, on_msssim in report.bd_rate_table(docs, anchor):
            print(f"BD-rate of {name} against {anchor}: {on_psnr} (PSNR), {on_msssim} (MS-SSIM)")
    written = [*paths, out / "per-image.csv", plot]
    if codecs and not args.no_report:
        from compressnet import perceptual as metrics

        scorer = None if metrics.unavailable() else metrics.PerceptualScorer()
        panels = report.image_panels(codecs[0], files, args.report_quality, scorer)
        written.append(report.write_report(out / "report.html", docs, plot, anchor, panels, notes))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from compressnet.evaluate.plot import plot_rd

    path = plot_rd(args.results, args.output, log_x=args.log_x, max_bpp=args.max_bpp,
                   references=args.reference)
    print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from compressnet.server.app import create_app

    if args.workers < 1 or not args.time_limit >= 0:
        raise CodecError("--workers takes 1 or more, --time-limit 0 (none) or more seconds")
    # the workers' threads add up to the cores: one request at a time per worker gets its share
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    app = create_app(args.model, max_upload=int(args.max_upload_mb * 1024 * 1024),
                     max_pixels=args.max_pixels, workers=args.workers, time_limit=args.time_limit)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"compressnet: warning: serving on {args.host}: anyone who can reach it can use it",
              file=sys.stderr)
    print(f"CompressNet on http://{args.host}:{args.port}/  (API docs: /docs; Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from compressnet.train.cli import run

    return run(args)


# Tools with their own argument parsers, run as `compressnet NAME ARGS...` (module, help)
TOOLS = {
    "fit-entropy": ("compressnet.train.fit_entropy",
                    "count context tables and fit the context network of a trained model"),
    "export": ("compressnet.train.export", "a training checkpoint -> a bundled-style weights file"),
    "grow": ("compressnet.train.grow", "widen or deepen a checkpoint's decoder before fine-tuning"),
    "card": ("compressnet.evaluate.card", "a model card (Kodak rate, distortion, crops) for a model"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits 1 (not 2) on bad usage, like every other error here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="compressnet", description=(
        "Generative image compression at 0.02-0.15 bits per pixel (CompressNet, Raman et al., "
        "WACV 2020): .cnet files from photos and back, evaluation against classical codecs, "
        "training. Start with: compressnet demo"))
    versions = bitstream.SUPPORTED_VERSIONS
    parser.add_argument("--version", action="version", version=(
        f"compressnet {__version__} (.cnet {min(versions)}-{max(versions)}, "
        f"writes {bitstream.FORMAT_VERSION})"))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="images -> .cnet files")
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="images, or folders of them (not their sub-folders)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-o", "--output", help="output file (one input only)")
    g.add_argument("--out-dir", help="folder for the outputs (default: beside each input)")
    p.add_argument("--model", default=zoo.DEFAULT_MODEL, help="bundled model name or weights file path")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--quality", "-q", type=_quality,
                   help="1 (lowest rate) upward; default: the middle of the model's ladder")
    q.add_argument("--target-bpp", type=_bpp,
                   help="highest quality whose file fits this rate, with finer colour blocks if they fit")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="search STEPS optimisation steps for a better latent per image: a better "
                        "image in a file no larger, any reader decodes it; each step costs about "
                        "one encode+decode (try 10)")
    p.add_argument("--refine-realism", type=float, default=0.0, metavar="R",
                   help="with --refine: search for the image the realism decoder at R (0-1) shows "
                        "(under its loss, LPIPS-Alex + 20 x MSE) instead of the faithful one; for "
                        "files meant to be read with --realism R; they still decode either way")
    p.add_argument("--no-colour-layer", action="store_true",
                   help="leave out the colour layer (block colours sent beside the latent; "
                        "format 8 instead of 7, or 4 instead of 6): a few bytes smaller, but the "
                        "default model trained through the layer and decodes several dB worse "
                        "without it (docs/evaluation.md)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help=".cnet files -> PNG (or WebP, JPEG, TIFF)")
    p.add_argument("inputs", nargs="+", metavar="IN.cnet", help=".cnet files, or folders of them")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-o", "--output", help="output image (one input only); its suffix picks the format: "
                   ".png, .webp (both lossless), .jpg (quality 95), .tif, .bmp, .ppm")
    g.add_argument("--out-dir", help="folder for the outputs (default: beside each input)")
    p.add_argument("--format", default="png", choices=["png", "webp", "jpg", "tif"],
                   help="format of the outputs named for you (NAME.decoded.FORMAT); default png")
    p.add_argument("--model", help="weights file, for files written with a user's model")
    p.add_argument("--realism", type=float, metavar="R",
                   help="0 = the faithful decoder (smooth), 1 = the realism decoder (sharp, "
                        "invented texture), between = a blend; default: the model's")
    p.add_argument("--realism-decoder", metavar="PATH",
                   help="a realism decoder file for --model's weights (compressnet train-realism)")
    p.add_argument("--preview", action="store_true",
                   help="write only the file's coarse colours, one pixel per colour block "
                        "(NAME.preview.FORMAT): instant, no network run")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("info", help="describe .cnet files without decoding them")
    p.add_argument("inputs", nargs="+", metavar="IN.cnet", help=".cnet files, or folders of them")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list the bundled models and their rates")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="compress and decompress the bundled sample photo")
    p.add_argument("--out-dir", default="compressnet-demo")
    p.add_argument("--model", default=zoo.DEFAULT_MODEL)
    p.add_argument("--quality", "-q", type=_quality)
    p.add_argument("--force", action="store_true", help="overwrite earlier demo outputs")
    p.set_defaults(func=cmd_demo)

    from compressnet.evaluate.classical import CODECS
    from compressnet.evaluate.compare import DEFAULT_TARGETS

    p = sub.add_parser("eval", help="rate-distortion of models and classical codecs on a folder")
    p.add_argument("folder")
    p.add_argument("--models", nargs="*", default=[zoo.DEFAULT_MODEL],
                   help="bundled model names or weights file paths")
    p.add_argument("--qualities", nargs="+", type=int, help="model qualities (default: all)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="encode the models with latent refinement (see compress --refine); "
                        "a --realism R curve's files are refined for the decoder at R")
    p.add_argument("--codecs", nargs="*", default=list(CODECS), choices=list(CODECS),
                   help="classical codecs (default: all)")
    p.add_argument("--target-bpp", nargs="+", type=float, default=list(DEFAULT_TARGETS),
                   help="rates at which classical codecs are matched per image")
    p.add_argument("--equal-bytes", action="store_true",
                   help="match the classical codecs per image to the first model's file at each "
                        "quality (the largest file not above it) instead of --target-bpp")
    p.add_argument("--realism", nargs="+", type=float, default=[0.0], metavar="R",
                   help="decode the models at these realism values, each its own curve (default 0)")
    p.add_argument("--realism-decoder", metavar="PATH", help="a realism decoder file for the models")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images (a quick look)")
    p.add_argument("-o", "--out-dir", default="results")
    p.add_argument("--workers", type=int, help="processes for classical codecs (default: cores)")
    p.add_argument("--anchor", default="hevc", help="BD-rate anchor (default: hevc)")
    p.add_argument("--reference", nargs="*", default=[], help="CompressAI JSON curves to overlay")
    p.add_argument("--log-x", action="store_true", help="log rate axis")
    p.add_argument("--max-bpp", type=float, default=0.5, help="plot range")
    p.add_argument("--no-colour-layer", action="store_true", help="encode the models without it")
    p.add_argument("--report-quality", type=int, default=1, help="model quality shown in the report")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--lpips-backbone", help="torchvision-format AlexNet/VGG16 state dict (.pth)")
    p.add_argument("--lpips-lin", help="LPIPS linear-layer weights (.pth, the lpips package's)")
    p.add_argument("--dists-weights", help="DISTS alpha/beta weights (.pt); needs --lpips-backbone VGG16")
    p.add_argument("--fid-model", help="TorchScript feature extractor for FID/KID on 256x256 patches")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="rate-distortion curves from CompressAI-format JSON files")
    p.add_argument("results", nargs="+")
    p.add_argument("-o", "--output", default="rd.png")
    p.add_argument("--reference", nargs="*", default=[], help="published curves, drawn dashed")
    p.add_argument("--log-x", action="store_true", help="log rate axis")
    p.add_argument("--max-bpp", type=float, help="plot range")
    p.set_defaults(func=cmd_plot)

    from compressnet.server import DEFAULT_MAX_PIXELS, DEFAULT_TIME_LIMIT

    p = sub.add_parser("serve", help="a local web page to compress and compare photos")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this computer only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=zoo.DEFAULT_MODEL)
    p.add_argument("--max-upload-mb", type=float, default=20.0)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    p.add_argument("--workers", type=int, default=2,
                   help="images processed at once (more requests queue); each gets cores/workers threads")
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT,
                   help="seconds a request may run before it is stopped with a 503 (0: no limit)")
    p.set_defaults(func=cmd_serve)

    from compressnet.train.cli import add_arguments

    p = sub.add_parser("train", help="train a model on a folder of photos")
    add_arguments(p)
    p.set_defaults(func=cmd_train)

    from compressnet.train import realism

    p = sub.add_parser("train-realism", help="train a realism decoder behind a model's frozen encoder")
    realism.add_arguments(p)
    p.set_defaults(func=lambda args: realism.run(args))
    for name, (_, help_text) in TOOLS.items():  # listed here; main() hands them their arguments
        sub.add_parser(name, help=help_text + f" (compressnet {name} -h)", add_help=False)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"compressnet: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:
        return importlib.import_module(TOOLS[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    warnings.showwarning = _warning_line
    np.seterr(all="ignore")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("compressnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `compressnet models | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (*INPUT_ERRORS, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"compressnet: error: {message}", file=sys.stderr)
        return 1
    except MemoryError:
        print("compressnet: error: out of memory (try a smaller image)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
