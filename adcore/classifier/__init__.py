"""Supervised good/defect classifier fine-tuned from an ImageNet backbone, with defect types."""

from adcore.classifier.classifier import Classifier, train_classifier
from adcore.classifier.config import ClassifierConfig, LabelledImage
from adcore.classifier.results import ClassifierPrediction, ClassifierReport
from adcore.classifier.torch_model import ClassifierModel

__all__ = [
    "Classifier",
    "ClassifierConfig",
    "ClassifierModel",
    "ClassifierPrediction",
    "ClassifierReport",
    "LabelledImage",
    "train_classifier",
]
