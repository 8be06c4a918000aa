"""Model configuration: the hyper-parameters that fix an architecture, and its presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

ARCHITECTURES = ("sae", "swwae", "sae-spn")
PRESETS = ("paper", "lite")
TUPLE_FIELDS = ("enc_widths", "spn_levels", "qualities", "up_blocks")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored beside its weights.

    ``qualities`` lists, for each ``--quality`` from 1 upward, how many of the
    ``latent_channels`` are sent (the model is trained with random channel
    truncation, so a prefix of the latent is a valid lower-rate code).
    ``up_blocks`` adds depth where the lite decoder is thinnest, at its finer levels;
    weights written before it existed load with none.
    """

    arch: str = "sae-spn"
    preset: str = "lite"
    enc_widths: tuple[int, ...] = (24, 48, 96, 128, 160)
    latent_channels: int = 16
    levels: int = 5
    res_width: int = 128
    res_blocks: int = 9
    spn_levels: tuple[int, ...] = (0,)
    qualities: tuple[int, ...] = (4, 6, 8, 11, 16)
    up_blocks: tuple[int, ...] = (0, 0, 0, 0)  # residual blocks after each level's 2x up

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {ARCHITECTURES}")
        if len(self.enc_widths) != 5:
            raise ValueError("enc_widths needs 5 entries (4 pooled blocks and the bottleneck block)")
        if not all(1 <= k <= self.latent_channels for k in self.qualities):
            raise ValueError("every quality must send between 1 and latent_channels channels")
        if list(self.qualities) != sorted(set(self.qualities)):
            raise ValueError("qualities must be strictly increasing")
        if len(self.up_blocks) != 4 or min(self.up_blocks) < 0:
            raise ValueError("up_blocks needs 4 counts (levels 0 to 3), none negative")
        if self.levels < 2 or self.levels % 2 == 0:
            raise ValueError("levels must be odd and >= 3 (symmetric around 0)")

    @property
    def switch_levels(self) -> tuple[int, ...]:
        """Pooling levels (0 = finest) whose switches the decoder uses."""
        if self.arch == "swwae":
            return (0, 1, 2, 3)
        if self.arch == "sae-spn":
            return tuple(sorted(self.spn_levels))
        return ()

    @property
    def transmits_switches(self) -> bool:
        return self.arch == "swwae"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        raw = json.loads(text)
        raw.pop("extra", None)  # an unused field that files before 0.9.0 carry (always {})
        for key in TUPLE_FIELDS:
            if key in raw:
                raw[key] = tuple(raw[key])
        return cls(**raw)


def preset_config(arch: str, preset: str = "lite", **overrides) -> ModelConfig:
    """The named preset of an architecture; ``overrides`` replace single fields."""
    if preset == "paper":
        base = dict(enc_widths=(60, 120, 240, 480, 960), res_width=960, latent_channels=16)
    elif preset == "lite":
        base = dict(enc_widths=(24, 48, 96, 128, 160), res_width=128, latent_channels=16)
    elif preset == "tiny":  # for tests only
        base = dict(enc_widths=(4, 6, 8, 8, 8), res_width=8, res_blocks=2, latent_channels=4,
                    qualities=(2, 4))
    else:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    base.update({k: tuple(v) if k in TUPLE_FIELDS else v for k, v in overrides.items()})
    return ModelConfig(arch=arch, preset=preset, **base)
