"""rcnn-train: train and test a detector (``python train.py`` is the same command).

    rcnn-train                                  Mask R-CNN + ROI Align on the synthetic shapes
    rcnn-train roi_op=pool                      the same with ROI Pooling
    rcnn-train -m roi_op=pool,align             a sweep
    rcnn-train data=coco data.train.images=...  your own COCO-format data
    rcnn-train --help                           every group and setting
"""

import sys

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError

from . import CONFIGS, SettingMissing, check_config_dir


def run(cfg: DictConfig) -> None:
    """One run. A function of this module, so that a sweep's worker processes
    (joblib, submitit) import it by name, and with it the config's resolvers."""
    from ..training import train  # Lightning is imported after the command line is read

    train(cfg)


_main = hydra.main(version_base="1.3", config_path=CONFIGS, config_name="train")(run)


class RequiredSettings(Callback):
    """Before a sweep's launcher starts (hydra.callbacks in train.yaml): a
    launcher setting left unset (``${must_set:...}``, e.g. hydra/launcher=slurm's
    partition) ends the command with one line naming it, whether the launcher
    was chosen on the command line or in a config, rather than with the
    resolver's traceback from inside the launcher."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        launcher = config.hydra.launcher
        for key in launcher:
            try:
                launcher[key]
            except InterpolationResolutionError as error:
                missing = _setting_missing(error)
                if missing is None:
                    raise
                choice = config.hydra.runtime.choices.get("hydra/launcher")
                raise SystemExit(f"error: hydra/launcher={choice} needs "
                                 f"{missing.key}=NAME, {missing.what}") from None


def _setting_missing(error: BaseException) -> SettingMissing | None:
    """The SettingMissing behind an omegaconf error (omegaconf re-raises while
    handling, so it is down the chain of __context__)."""
    while error is not None and not isinstance(error, SettingMissing):
        error = error.__cause__ or error.__context__
    return error


def main() -> None:
    check_config_dir(sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
