"""Errors raised at the toolkit's boundaries.

Every error names what was wrong (a path, a field, a sample id) so a user can fix it
without reading a traceback. They never carry patient data (image pixels, DICOM tags).
"""

from __future__ import annotations


class BiMediX2Error(Exception):
    """Base class of every error this toolkit raises on purpose."""


class ImageError(BiMediX2Error, ValueError):
    """An image could not be read, or breaks a configured limit."""


class ConversationError(BiMediX2Error, ValueError):
    """A conversation is malformed (empty message, wrong roles, misplaced images)."""


class ModelLoadError(BiMediX2Error):
    """A checkpoint could not be found, recognised or loaded."""


class NoVisionError(BiMediX2Error):
    """Images were given to a model that has no vision encoder."""


class ContextTooLongError(BiMediX2Error, ValueError):
    """The prompt does not fit the model's context window."""


class ImageTokenMismatchError(BiMediX2Error, ValueError):
    """The number of image placeholder tokens does not match the image features."""


class ConfigError(BiMediX2Error, ValueError):
    """A configuration file or override is invalid."""


class LLMError(BiMediX2Error):
    """An OpenAI-compatible endpoint failed, refused the request, or gave an unusable reply."""


class DataError(BiMediX2Error, ValueError):
    """A data file or record is malformed; the message names the file, line and record id."""


class EvalDataError(BiMediX2Error, ValueError):
    """An evaluation dataset, task file or results file is missing or malformed; names the path to provide."""


class RecordError(BiMediX2Error, ValueError):
    """A training record is malformed or cannot be turned into a masked token sequence."""


class TrainingError(BiMediX2Error):
    """A training run cannot start or continue (hardware, checkpoint, configuration mismatch)."""
