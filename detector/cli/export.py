"""rcnn-export: write a detector as a .pt2 program or an .onnx model (see detector.export).

    rcnn-export ckpt_path=outputs/RUN/checkpoints/last.ckpt output=model.onnx
    rcnn-export torchvision=maskrcnn_resnet50_fpn weights=maskrcnn.pth output=model.pt2
    rcnn-predict exported=model.onnx input=photos/    the same pictures and predictions.json
"""

import sys
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from . import CONFIGS, check_config_dir


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="export")
def _main(cfg: DictConfig) -> None:
    from ..export import export
    from ..predict import load_model

    inference = OmegaConf.to_container(cfg.get("inference") or {}, resolve=True)
    model = load_model(cfg.get("ckpt_path"), cfg.get("torchvision"), cfg.get("weights"),
                       cfg.get("min_size"), cfg.get("max_size"), inference).cpu()
    output = Path(to_absolute_path(cfg.output))
    fmt = cfg.get("format") or output.suffix.lstrip(".")
    if cfg.get("channels_last", True) and fmt == "pt2":
        model.set_channels_last()
    if cfg.get("fuse", True):
        model.fuse()
    path = export(model, output, cfg.get("format"))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB); run it with "
          f"rcnn-predict exported={path} input=...")


def main() -> None:
    check_config_dir(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
