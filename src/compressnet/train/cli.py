"""Command-line options of ``compressnet train``, generated from :class:`TrainConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing

from compressnet.train.loop import TrainConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "data":
            parser.add_argument("data", help="folder of training photos")
            continue
        kind = hints[f.name]
        if f.name == "preset_overrides":
            parser.add_argument(flag, type=json.loads, default=None,
                                help="JSON object of model config fields to override")
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        about = f.metadata.get("help", "")
        if base is bool:
            parser.add_argument(flag, action="store_true", help=about or "(off by default)")
            continue
        parser.add_argument(flag, type=base, default=f.default,
                            help=f"{about} (default: {f.default})".strip())
    parser.add_argument("--config", help="JSON file of options (a run's OUT/config.json works); "
                        "options on the command line win")
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT/ckpt.pt exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace, argv: list[str] | None = None) -> TrainConfig:
    """Options from ``--config`` (if any), overridden by those given on the command line."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "config", None):
        try:
            from_file = json.loads(open(args.config).read())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{args.config}: not a readable JSON config ({exc})") from None
        unknown = set(from_file) - names
        if unknown:
            raise ValueError(f"{args.config}: unknown options {sorted(unknown)}")
        given = _given_on_command_line(argv)
        for key, value in from_file.items():
            if key not in given and key != "data":  # the positional DATA always wins
                values[key] = value
    return TrainConfig(**values)


def _given_on_command_line(argv: list[str] | None) -> set[str]:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    return {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    cfg = config_from_args(args, argv)
    path = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    print(f"weights: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compressnet train", description="Train a CompressNet model.")
    add_arguments(parser)
    return run(parser.parse_args(argv), argv)
