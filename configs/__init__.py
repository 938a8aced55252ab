# The Hydra configs, installed as the package detector.configs (see pyproject.toml) and
# read by the commands as pkg://detector.configs. This folder is their one source.
