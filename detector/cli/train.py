"""rcnn-train: train and test a detector (``python train.py`` is the same command).

    rcnn-train                                  Mask R-CNN + ROI Align on the synthetic shapes
    rcnn-train roi_op=pool                      the same with ROI Pooling
    rcnn-train -m roi_op=pool,align             a sweep
    rcnn-train data=coco data.train.images=...  your own COCO-format data
    rcnn-train --help                           every group and setting
"""

import sys

import hydra
from omegaconf import DictConfig

from . import CONFIGS, check_config_dir


def run(cfg: DictConfig) -> None:
    """One run. A function of this module, so that a sweep's worker processes
    (joblib, submitit) import it by name, and with it the config's resolvers."""
    from ..training import train  # Lightning is imported after the command line is read

    train(cfg)


_main = hydra.main(version_base="1.3", config_path=CONFIGS, config_name="train")(run)


def _check_slurm_partition(argv: list[str]) -> None:
    """hydra/launcher=slurm needs a partition: said before anything starts
    (the config's own check, must_set, fires deep in the launcher)."""
    if "hydra/launcher=slurm" in argv and not any(
            a.startswith("hydra.launcher.partition=") for a in argv):
        raise SystemExit("error: hydra/launcher=slurm needs hydra.launcher.partition=NAME, the "
                         "SLURM partition to run in (sinfo lists them)")


def main() -> None:
    check_config_dir(sys.argv[1:])
    _check_slurm_partition(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
