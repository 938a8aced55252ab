"""Train and evaluate a detector: ``python train.py [overrides]`` (Hydra).

Examples:
    python train.py                              # Mask R-CNN + ROI Align on the synthetic shapes
    python train.py roi_op=pool                  # the same with ROI Pooling
    python train.py -m roi_op=pool,align         # a sweep
    python train.py train=false ckpt_path=PATH   # evaluate a checkpoint
"""

import hydra
from omegaconf import DictConfig

from detector.training import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
