"""vgg-retrieval, model side: VGG descriptor networks, weights, preprocessing, export, engines."""
from .errors import ModelMismatchError, UserError
from .spec import ModelSpec

__all__ = ["ModelSpec", "UserError", "ModelMismatchError"]
