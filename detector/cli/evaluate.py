"""rcnn-evaluate: test a checkpoint as it was trained (the model its
specification describes: operators, classes, resize, inference), changed only
by model settings given on the command line; writes results.json.

    rcnn-evaluate ckpt_path=outputs/RUN/checkpoints/best-epoch011.ckpt
    rcnn-evaluate ckpt_path=... data=coco data.test.images=... data.test.annotations=...
    rcnn-evaluate ckpt_path=... model.transform.min_size=1024   evaluated at another size
"""

import sys

import hydra
from omegaconf import DictConfig

from . import CONFIGS, check_config_dir


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="evaluate")
def _main(cfg: DictConfig) -> None:
    from ..training import train

    train(cfg)


def main() -> None:
    check_config_dir(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
