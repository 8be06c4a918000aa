"""The CompressNet models (SAE, SWWAE, SAE-SPN), their layers and weights files."""

from compressnet.models.autoencoder import CompressNetModel
from compressnet.models.config import ModelConfig, preset_config

__all__ = ["CompressNetModel", "ModelConfig", "preset_config"]
