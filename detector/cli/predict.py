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
    if cfg.get("exported"):
        model = _exported(cfg, inference)
    else:
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


def _exported(cfg: DictConfig, inference: dict):
    """The exported model of exported=FILE; its resize and inference settings are
    in its graph, so setting them here is an error rather than ignored."""
    from hydra.utils import to_absolute_path

    from ..export import ExportedDetector

    given = [key for key in ("ckpt_path", "torchvision", "weights", "min_size", "max_size")
             if cfg.get(key) is not None]
    given += [f"inference.{key}" for key, value in inference.items() if value is not None]
    if given:
        raise SystemExit(f"error: exported={cfg.exported} is an exported model, whose resize and "
                         f"inference settings were fixed by rcnn-export; drop {', '.join(given)} "
                         "(or export again with them)")
    if cfg.device not in ("auto", "cpu"):
        raise SystemExit(f"error: exported={cfg.exported}: exported models run on the CPU here "
                         f"(device={cfg.device})")
    cfg.device = "cpu"
    return ExportedDetector(to_absolute_path(cfg.exported))


def main() -> None:
    check_config_dir(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
