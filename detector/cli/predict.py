"""rcnn-predict: run a detector on your images (see detector.predict).

    rcnn-predict ckpt_path=outputs/RUN/checkpoints/best-epoch011.ckpt input=photos/
    rcnn-predict torchvision=maskrcnn_resnet50_fpn weights=maskrcnn.pth input="photos/*.jpg"
    rcnn-predict --help                        every setting
"""

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from . import CONFIGS, check_config_dir


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="predict")
def _main(cfg: DictConfig) -> None:
    from ..predict import find_images, load_model, predict

    inference = OmegaConf.to_container(cfg.get("inference") or {}, resolve=True)
    model = load_model(cfg.get("ckpt_path"), cfg.get("torchvision"), cfg.get("weights"),
                       cfg.get("min_size"), cfg.get("max_size"), inference)
    if cfg.get("channels_last", True):
        model.set_channels_last()
    if cfg.get("fuse", True):
        model.fuse()  # BatchNorm folded into the convolutions: the same detections, faster
    paths = find_images(cfg.input)
    results = predict(model, paths, cfg.output, cfg.batch_size, cfg.device, cfg.score_threshold)
    print(f"{len(results)} detections in {len(paths)} images; pictures and predictions.json "
          f"in {cfg.output}")


def main() -> None:
    check_config_dir(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
