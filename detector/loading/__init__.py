"""A whole detector from a file: ``detector.load`` (checkpoint), the model
specification every checkpoint keeps and the table of its old import paths
(spec), and torchvision's detector state dicts (torchvision_compat). Above the
models: it builds them, so it cannot sit in weights/, which the models use."""
