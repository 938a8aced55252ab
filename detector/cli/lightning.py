"""rcnn-lightning: Lightning's own command line for the same LightningModule and
DataModule as rcnn-train; with no --config it runs the packaged sample
(configs/cli/mask_rcnn_synthetic.yaml, the same run as rcnn-train's default).

    rcnn-lightning fit
    rcnn-lightning fit --config my.yaml --trainer.max_epochs=24
    rcnn-lightning test --ckpt_path PATH
    rcnn-lightning predict --ckpt_path PATH
    rcnn-lightning fit --help                  every option
"""

import sys
from importlib.resources import files

from pytorch_lightning.cli import LightningCLI

from ..training import CocoDataModule, DetectionModule, TrainingDiverged
from ..training.interrupt import RunInterrupted

SAMPLE = files("detector.configs") / "cli" / "mask_rcnn_synthetic.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run(args=None) -> LightningCLI:
    """The LightningCLI, run on ``args`` (default: the command line)."""
    defaults = {"default_config_files": [str(SAMPLE)]}
    return LightningCLI(DetectionModule, CocoDataModule, subclass_mode_data=True, args=args,
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
