"""rcnn-lightning: Lightning's own command line for the same LightningModule and
DataModule as rcnn-train; with no --config it runs the packaged sample
(configs/cli/mask_rcnn_synthetic.yaml, the same run as rcnn-train's default).

    rcnn-lightning fit
    rcnn-lightning fit --config my.yaml --trainer.max_epochs=24
    rcnn-lightning test --ckpt_path PATH
    rcnn-lightning predict --ckpt_path PATH
    rcnn-lightning fit --help                  every option

validate, test and predict with --ckpt_path build the checkpoint's own model
(its specification: architecture, ROI operators, classes, resize, inference),
as rcnn-evaluate does; where the config's model differs, a warning names the
keys, and the checkpoint's is used.
"""

import logging
import sys
from importlib.resources import files

from pytorch_lightning.cli import LightningCLI

from ..training import CocoDataModule, DetectionModule, TrainingDiverged
from ..loading.spec import without_pretrained_files
from ..training.checkpoint_model import (
    CLASS_KEYS,
    explicit_changes,
    saved_spec,
    spec_to_resume,
)
from ..training.interrupt import RunInterrupted

log = logging.getLogger(__name__)

SAMPLE = files("detector.configs") / "cli" / "mask_rcnn_synthetic.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


class DetectorCLI(LightningCLI):
    """LightningCLI whose evaluating subcommands use the checkpoint's model."""

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if self.subcommand == "fit" and config.get("ckpt_path"):
            configured = config.model.model
            if hasattr(configured, "as_dict"):
                configured = configured.as_dict()
            if isinstance(configured, dict):  # the normalisation its init_weights gave it
                config.model.model = spec_to_resume(config.ckpt_path, configured)
            return
        if self.subcommand not in ("validate", "test", "predict") or not config.get("ckpt_path"):
            return
        saved = saved_spec(config.ckpt_path)
        configured = config.model.model
        if hasattr(configured, "as_dict"):
            configured = configured.as_dict()
        if isinstance(configured, dict):
            differs = sorted(".".join(path) for path in explicit_changes(configured, saved)
                             if path[0] not in CLASS_KEYS)
            if differs:
                log.warning("the config's model differs from the checkpoint's in %s: the "
                            "checkpoint's is used (%s)", ", ".join(f"model.{k}" for k in differs),
                            config.ckpt_path)
        config.model.model = without_pretrained_files(saved)  # the checkpoint's weights

    def before_fit(self) -> None:
        # resuming: every weight comes from the checkpoint, no pretrained file is read
        self.model.resuming = bool(self.config.get(self.subcommand).get("ckpt_path"))


def run(args=None) -> LightningCLI:
    """The LightningCLI, run on ``args`` (default: the command line)."""
    defaults = {"default_config_files": [str(SAMPLE)]}
    return DetectorCLI(DetectionModule, CocoDataModule, subclass_mode_data=True, args=args,
                       parser_kwargs={name: defaults for name in SUBCOMMANDS},
                       save_config_kwargs={"overwrite": True})


def main() -> None:
    """As rcnn-train ends: a diverged run is one error line naming the step and
    the last good checkpoint (exit 1), an interrupted one says where to resume
    (exit 130); neither is a traceback."""
    try:
        run()
    except TrainingDiverged as error:
        raise SystemExit(f"error: {error}") from None
    except RunInterrupted as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
