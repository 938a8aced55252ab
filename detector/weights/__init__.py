"""Weights in files and how they fit a model: reading state dicts and
checkpoints without running code (files), torchvision's detector names
(torchvision_names), and starting a model from a trained detector (fine_tune:
``init_weights``). Below the models: nothing here imports a model class, so the
builders and backbones can use it."""
