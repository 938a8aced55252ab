"""The small real-photo datasets that scripts here build from pictures scikit-image
ships (coins: detector.data.builders.coins; galaxies: detector.data.builders.galaxies), as a
datamodule that writes them once under a folder: what the real-image studies
(configs/data/coins.yaml, galaxies.yaml) train on without a separate step."""

from __future__ import annotations

from .datamodule import CocoDataModule

PHOTO_DATASETS = ("coins", "galaxies")


def build_photo_dataset(name: str, root: str) -> dict:
    """Writes (once) dataset ``name`` under ``root``; returns its COCO splits."""
    if name == "coins":
        from ..data.builders.coins import make_coins_coco as make
    elif name == "galaxies":
        from ..data.builders.galaxies import make_galaxies_coco as make
    else:
        raise ValueError(f"data.name must be one of {', '.join(PHOTO_DATASETS)}, got {name!r}")
    return {split: {"images": str(images), "annotations": str(annotations)}
            for split, (images, annotations) in make(root).items()}


class PhotoDataModule(CocoDataModule):
    """Dataset ``name`` (coins or galaxies), written once under ``root``
    (needs scikit-image), with train and val splits (the test runs on val).
    The other keyword arguments are CocoDataModule's."""

    def __init__(self, name: str, root: str, **options):
        self.name = name
        splits = build_photo_dataset(name, root)
        super().__init__(splits["train"], splits["val"], None, **options)
