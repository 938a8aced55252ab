"""Writes the checkpoint test_old_checkpoint.py loads: a tiny Mask R-CNN trained
for two steps by the code as it was before detector/ was laid out by role (its
specification names the old import paths: detector.builders.fpn_rcnn,
detector.transform.ImageTransform), and the detections that code predicted on
one image. Kept to show how the files were made; running it again writes a
checkpoint of today's code instead.

    python tests/data/checkpoint_before_layout/make.py
"""

from pathlib import Path

import pytorch_lightning as pl
import torch

import detector
from detector.training import DetectionModule, SyntheticDataModule

HERE = Path(__file__).resolve().parent
SPEC = {  # the import paths of the old layout, as checkpoints of that time name them
    "_target_": "detector.builders.fpn_rcnn", "num_classes": None, "depth": 18,
    "backbone_width": 8, "norm": "bn", "trainable_stages": 5, "fpn_channels": 8,
    "representation_size": 16, "mask_channels": 8, "anchor_sizes": [16, 32, 64, 128, 256],
    "box_op": {"_target_": "ops.roi_align", "_partial_": True, "output_size": 7,
               "sampling_ratio": 2, "aligned": True},
    "mask_op": {"_target_": "ops.roi_warp", "_partial_": True, "output_size": 14,
                "sampling_ratio": 2},
    "transform": {"_target_": "detector.transform.ImageTransform", "min_size": 96,
                  "max_size": 128},
    "inference": {"score_thresh": 0.0, "detections_per_image": 4},
}


def main(root: Path = Path("/tmp/checkpoint_before_layout")) -> None:
    pl.seed_everything(0)
    data = SyntheticDataModule(str(root / "data"), num_train=4, num_val=2, image_size=(96, 128),
                               batch_size=2)
    module = DetectionModule(SPEC, optimizer="adamw", lr=1e-3, warmup_steps=1)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
                         default_root_dir=root)
    trainer.fit(module, data)
    checkpoint = HERE / "mask_rcnn.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=True)  # no optimizer state: small
    image = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 96, 128), generator=image, dtype=torch.uint8)
    with torch.no_grad():
        [out] = detector.load(checkpoint).predict([image.float() / 255])
    torch.save({"image": image, **{k: v for k, v in out.items()}}, HERE / "expected.pt")


if __name__ == "__main__":
    main()
