"""Dataset loaders. Importing this package registers every loader; nothing else imports the loader files."""

from dlrun.data.sources import digits, image_folder, sklearn_sets, synthetic, tabular, torchvision_sets  # noqa: F401
from dlrun.data.sources.registry import Source, get_loader, list_datasets, register_dataset

__all__ = ["Source", "get_loader", "list_datasets", "register_dataset"]
