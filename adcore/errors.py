"""Typed errors raised by the detection core.

Every error a user can cause (a bad file, a missing weight file, a tampered model) is a
``LoupeError`` with a message that says what went wrong and what to do, never a bare traceback.
"""


class LoupeError(Exception):
    """Base class of every error Loupe raises on purpose."""


class ImageLoadError(LoupeError):
    """An image could not be opened or was refused."""


class UnreadablePathError(ImageLoadError):
    """The path does not exist, is a directory, or cannot be read."""


class EmptyFileError(ImageLoadError):
    """The file has zero bytes."""


class NotAnImageError(ImageLoadError):
    """The bytes are not an image in a supported format, whatever the extension says."""


class CorruptImageError(ImageLoadError):
    """The file looks like an image but is truncated or damaged."""


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class AspectRatioError(ImageLoadError):
    """The image is absurdly long and thin (or tiny) and cannot be a camera frame of a part."""


class DatasetError(LoupeError):
    """A dataset folder or spec is missing, empty or malformed."""


class WeightsNotFoundError(LoupeError):
    """Pretrained backbone weights are not present locally and cannot be downloaded."""


class ModelFileError(LoupeError):
    """A saved model is missing, incomplete, tampered with, or does not match its config."""


class JobCancelled(LoupeError):  # noqa: N818 - the name the job runner expects
    """A long-running job (training, batch scoring) was cancelled by its caller."""


class ExplainerUnavailable(LoupeError):  # noqa: N818 - reads as a state, like JobCancelled
    """The optional language-model explainer cannot be loaded (package or weights missing)."""
