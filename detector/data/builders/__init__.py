"""Dataset builders: each writes a dataset as COCO json + images, atomically
(see ..publishing): the built-in synthetic shapes (synthetic, the default
everywhere), and two small real-photo sets made from pictures that ship
with scikit-image (coins, galaxies). Run one with
``python -m detector.data.builders.NAME``."""
