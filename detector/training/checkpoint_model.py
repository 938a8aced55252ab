"""The model a checkpoint holds, and what a command may change in it.

An evaluation (``rcnn-evaluate``, ``rcnn-train train=false``) runs the
checkpoint's own specification (architecture, ROI operators, classes and
category ids, resize, inference settings), changed only where the command line
changed the model explicitly.

Today's config is not the checkpoint's: its defaults may have moved since, and a
ROI Pool run evaluated with the default ROI Align would load without a word
(neither operator has parameters). So what the config says about the model
counts only where the command line made it differ from the config without those
overrides: ``roi_op=...``, ``backbone=...``, ``model=...``, ``experiment=...``
and ``model.*`` (see explicit_changes). Each change is logged against the
checkpoint's value and recorded in results.json.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from ..loading.spec import PRETRAINED_FILE_KEYS, without_pretrained_files
from ..weights.files import read_checkpoint

log = logging.getLogger(__name__)

# config groups and keys whose overrides change the model (the others, data=...,
# trainer=..., seed=..., leave it alone)
MODEL_KEYS = ("model", "roi_op", "backbone", "experiment", "ablation")
# what the weights' shapes and the data's labels fix: always the checkpoint's
CLASS_KEYS = ("num_classes", "class_names", "category_ids")

_REMOVED = "<removed>"


def saved_spec(ckpt_path: str) -> dict:
    """The model specification a checkpoint of this project keeps."""
    spec = read_checkpoint(ckpt_path).get("hyper_parameters", {}).get("model")
    if not isinstance(spec, Mapping) or spec.get("num_classes") is None:
        raise ValueError(f"ckpt_path={ckpt_path} has no complete model specification "
                         "(hyper_parameters.model with num_classes): it was not written by "
                         "rcnn-train or rcnn-lightning, and cannot be evaluated")
    return copy.deepcopy(dict(spec))


def names_the_model(override: str) -> bool:
    """Whether a command-line override (``roi_op=pool``, ``+model.x=1``,
    ``model.transform.min_size=1024``) changes the model."""
    key = override.lstrip("+~").split("=", 1)[0]
    return key.split(".", 1)[0].split("@", 1)[0].split("/", 1)[0] in MODEL_KEYS


def explicit_changes(configured: Mapping, baseline: Mapping,
                     path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """{path: value} where the configured model differs from the baseline (the
    same config composed without the model's overrides). A part whose builder
    (``_target_``) changed is replaced whole; a key the overrides removed has
    the value ``_REMOVED``."""
    changes = {}
    for key in list(configured) + [k for k in baseline if k not in configured]:
        new, old = configured.get(key, _REMOVED), baseline.get(key, _REMOVED)
        if new == old:
            continue
        if (isinstance(new, Mapping) and isinstance(old, Mapping)
                and new.get("_target_") == old.get("_target_")):
            changes.update(explicit_changes(new, old, (*path, key)))
        else:
            changes[(*path, key)] = new
    return changes


def apply_changes(spec: Mapping, changes: Mapping[tuple[str, ...], object]) -> dict:
    """``spec`` with ``changes`` (see explicit_changes) applied."""
    spec = copy.deepcopy(dict(spec))
    for path, value in changes.items():
        node = spec
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if value == _REMOVED:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = copy.deepcopy(value)
    return spec


def _value_at(spec: Mapping, path: Sequence[str]):
    for key in path:
        if not isinstance(spec, Mapping) or key not in spec:
            return _REMOVED
        spec = spec[key]
    return spec


def given_paths(model: DictConfig, overrides: Sequence[str]) -> list[tuple[str, ...]]:
    """The model's keys that the overrides name, whatever their value (one that
    sets the config's default is explicit too): ``model.a.b=...`` names
    (a, b); a group override (``roi_op=align``) names the model's keys that
    are interpolations of that group (``box_op: ${roi_op.box}``)."""
    paths, groups = [], set()
    for override in overrides:
        if not names_the_model(override):
            continue
        key = override.lstrip("+~").split("=", 1)[0]
        if key.startswith("model."):
            paths.append(tuple(key.split(".")[1:]))
        else:
            groups.add(key.split("@", 1)[0].split("/", 1)[0])

    def walk(node: DictConfig, path: tuple[str, ...]):
        for key in node:
            if OmegaConf.is_interpolation(node, key):
                text = str(node._get_node(key)._value())
                if any(f"${{{group}." in text or f"${{{group}}}" in text for group in groups):
                    paths.append((*path, str(key)))
            elif isinstance(node.get(key), DictConfig):
                walk(node[key], (*path, str(key)))

    if groups:
        walk(model, ())
    return paths


def model_to_evaluate(ckpt_path: str, configured: Mapping, baseline: Mapping | None,
                      given: Sequence[tuple[str, ...]] = ()) -> tuple[dict, list[dict]]:
    """The specification to build for evaluating ``ckpt_path``, and the list of
    what the command line changed in it ({"key", "checkpoint", "now"}).

    ``configured`` is the composed config's model; ``baseline`` the model of
    the same config without the model's overrides (None: nothing was given
    explicitly, e.g. a config built in Python); ``given``: the model's keys the
    overrides name (see given_paths), taken from ``configured`` even where
    they equal the baseline."""
    saved = saved_spec(ckpt_path)
    changes = explicit_changes(configured, baseline) if baseline is not None else {}
    for path in given:
        if path not in changes:
            changes[tuple(path)] = _value_at(configured, path)
    fixed = sorted(".".join(p) for p, v in changes.items()
                   if p[0] in CLASS_KEYS and v != _value_at(saved, p))
    if fixed:
        raise ValueError(f"{', '.join('model.' + k for k in fixed)}: the classes of a checkpoint "
                         f"are its own ({ckpt_path}); evaluating cannot change them")
    changes = {p: v for p, v in changes.items() if p[0] not in CLASS_KEYS}
    if saved.get("masks", True) and changes.get(("masks",), True) is False:
        raise ValueError(f"model.masks=false (model=faster_rcnn): {ckpt_path} has a mask head, "
                         "which an evaluation cannot drop; its box AP is in the same results")
    spec = without_pretrained_files(apply_changes(saved, changes))  # the checkpoint's weights
    report = []
    for path, value in changes.items():
        before = _value_at(saved, path)
        if before == value:
            continue
        key = "model." + ".".join(path)
        report.append({"key": key, "checkpoint": before, "now": value})
        log.warning("%s: %s in the checkpoint, %s for this evaluation (given on the command "
                    "line)", key, before, value)
    return spec, report


def baseline_model(config_name: str, overrides: Sequence[str],
                   config_sources: Sequence | None = None) -> dict:
    """The model of ``config_name`` composed with ``overrides`` minus those that
    change the model (see names_the_model), resolved. Uses the running Hydra
    app's config search path (``rcnn-evaluate``); outside one, the primary
    config source of ``config_sources`` (HydraConfig's runtime.config_sources)."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    kept = [o for o in overrides if not names_the_model(o)]

    def model_of(cfg: DictConfig) -> dict:
        return OmegaConf.to_container(cfg.model, resolve=True)

    if GlobalHydra.instance().is_initialized():
        return model_of(compose(config_name, overrides=kept))
    main = next((s for s in config_sources or () if s["provider"] == "main"), None)
    if main is None:
        raise ValueError("cannot compose the config without the model's overrides: no Hydra "
                         "app is running and the config's source is unknown")
    if main["schema"] == "pkg":
        context = initialize_config_module(main["path"], version_base="1.3")
    else:
        context = initialize_config_dir(main["path"], version_base="1.3")
    with context:
        return model_of(compose(config_name, overrides=kept))


def spec_to_resume(ckpt_path: str, configured: Mapping) -> dict:
    """The specification a run resumed from ``ckpt_path`` trains (after
    check_resumed_model): the configured one and, when it started from
    ``init_weights``, the normalisation the checkpoint kept from that file.
    Its pretrained-file paths stay as the record of where the run started;
    the model is built without reading them (DetectionModule.resuming)."""
    spec = copy.deepcopy(dict(configured))
    if spec.get("init_weights"):
        saved = (saved_spec(ckpt_path).get("transform") or {})
        transform = dict(spec.get("transform") or {})
        transform.update({k: saved[k] for k in ("mean", "std") if k in saved})
        spec["transform"] = transform
    return spec


def check_resumed_model(ckpt_path: str, configured: Mapping) -> None:
    """Resuming training from ``ckpt_path`` with ``configured``: refused where
    the configured model sets a key of the checkpoint's to another value
    (apart from its classes, which the data sets, its inference settings and
    its pretrained-weights files, which the checkpoint's weights replace),
    naming the keys: a ROI Pool run resumed without ``roi_op=pool`` would go on
    with ROI Align. A key in only one of them (a setting added or removed by
    another version of the project) is a warning."""
    saved = saved_spec(ckpt_path)
    differs, missing = {}, []
    for path, value in explicit_changes(configured, saved).items():
        if path[0] in CLASS_KEYS or path[0] == "inference" or path[-1] in PRETRAINED_FILE_KEYS:
            continue  # the data's; free to change; overwritten by the checkpoint's weights
        if configured.get("init_weights") and path in (("transform", "mean"),
                                                       ("transform", "std")):
            continue  # the init_weights file's normalisation (spec_to_resume)
        before = _value_at(saved, path)
        if before == _REMOVED or value == _REMOVED:
            missing.append(".".join(path))  # a setting newer (or older) than the checkpoint
        else:
            differs[".".join(path)] = (before, value)
    if missing:
        log.warning("model settings %s are in only one of the config and the checkpoint %s "
                    "(written by another version): the config's are used",
                    ", ".join(f"model.{k}" for k in missing), ckpt_path)
    if differs:
        listed = "; ".join(f"model.{k}: {old} in the checkpoint, {new} now"
                           for k, (old, new) in sorted(differs.items()))
        raise ValueError(f"ckpt_path={ckpt_path} is resumed with another model ({listed}): "
                         "give the overrides the run was started with")
