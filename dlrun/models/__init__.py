"""Models. Importing this package registers every family; nothing else imports the family files."""

from dlrun.models import alexnet, inception, lenet, mlp, recurrent, resnet, torchvision_models, vgg  # noqa: F401
from dlrun.models.registry import Net, build, list_models, register_model

__all__ = ["Net", "build", "list_models", "register_model"]
