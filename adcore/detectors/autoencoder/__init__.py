"""Reconstruction autoencoder: trained from scratch on good images, scored by rebuild error."""

from adcore.detectors.autoencoder.detector import Autoencoder, AutoencoderConfig
from adcore.detectors.autoencoder.torch_model import AutoencoderModel, reconstruction_loss

__all__ = ["Autoencoder", "AutoencoderConfig", "AutoencoderModel", "reconstruction_loss"]
