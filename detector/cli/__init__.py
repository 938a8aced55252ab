"""The command-line apps, installed as console commands (see pyproject.toml):

    rcnn-train      train and test a detector (Hydra key=value; python train.py is the same)
    rcnn-evaluate   test a checkpoint (rcnn-train with train=false)
    rcnn-predict    run a detector on your images: pictures and predictions.json
    rcnn-report     the table and chart of a study's runs
    rcnn-explain    how the ROI operators place one box on the feature grid
    rcnn-lightning  Lightning's own command line (fit/validate/test/predict --config)
    rcnn-export     write a detector as a .pt2 program or an .onnx model (rcnn-predict exported=FILE)

The Hydra apps read their configs from the package (pkg://detector.configs, the
repository's configs/ folder); --config-dir DIR adds a folder of your own whose
groups extend or override them. Everything they write goes under the current
directory (paths.root_dir, ./outputs and ./data by default).
"""

import hashlib

from omegaconf import OmegaConf

CONFIGS = "pkg://detector.configs"
RUN_DIRNAME_MAX = 120


def run_dirname(overrides: str) -> str:
    """A sweep run's folder name from its overrides (``roi_op=pool,seed=0``, as
    Hydra's override_dirname writes them): one path component ('/' becomes
    '%'), and past RUN_DIRNAME_MAX characters its start and a hash of the
    whole, so that it stays a valid name and different overrides never share
    a folder. The config's ``${run_dirname:...}``; registered when this
    package is imported, as the sweep's worker processes do (they import the
    commands' task functions)."""
    name = str(overrides).replace("/", "%") or "run"
    if len(name) > RUN_DIRNAME_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:12]
        name = f"{name[:RUN_DIRNAME_MAX - 14]}..{digest}"
    return name


class SettingMissing(ValueError):
    """A ``${must_set:KEY,WHAT}`` setting was read and nobody had set it."""

    def __init__(self, key: str, what: str):
        super().__init__(f"{key} must be set on the command line ({key}=...): {what}")
        self.key, self.what = key, what


def must_set(key: str, what: str):
    """``${must_set:KEY,WHAT}``: a setting with no default that the user must
    give (a structured config's field cannot be made ``???`` by a config file
    on top of it: merging leaves the field's default)."""
    raise SettingMissing(key, what)


OmegaConf.register_new_resolver("run_dirname", run_dirname, replace=True)
OmegaConf.register_new_resolver("must_set", must_set, replace=True)


def check_config_dir(argv: list[str]) -> None:
    """Refuses a --config-dir folder holding a config with the same name as a
    packaged one: Hydra searches the packaged configs first, so such a file
    would be silently ignored. (New options, e.g. data/mine.yaml, extend the
    groups; one can start from a packaged option through its defaults list.)"""
    from importlib.resources import files
    from pathlib import Path

    folders = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config-dir", "-cd")]
    folders += [a.split("=", 1)[1] for a in argv if a.startswith("--config-dir=")]
    packaged = files("detector.configs")
    for folder in folders:
        root = Path(folder)
        for path in sorted(root.rglob("*.yaml")) if root.is_dir() else []:
            relative = path.relative_to(root).as_posix()
            if packaged.joinpath(relative).is_file():
                option = relative.removesuffix(".yaml")
                raise SystemExit(
                    f"error: --config-dir {folder}: {relative} has the name of a packaged config "
                    f"({option}), which Hydra would use instead of yours; give yours a new name "
                    f"(e.g. {option.rpartition('/')[0] or '.'}/my_{option.rpartition('/')[2]}.yaml)"
                    f" and select it on the command line; it can start from ours with "
                    f"'defaults: [{option.rpartition('/')[2]}]'")
