"""Lightning's own command line for the same LightningModule and DataModule:

    python -m detector fit --config configs/cli/mask_rcnn_synthetic.yaml
    python -m detector test --config configs/cli/mask_rcnn_synthetic.yaml --ckpt_path PATH
    python -m detector predict --config configs/cli/mask_rcnn_synthetic.yaml --ckpt_path PATH

(``python -m detector --help`` lists every option.) train.py is the Hydra
equivalent, with the config groups of configs/.
"""

from pytorch_lightning.cli import LightningCLI

from .training import CocoDataModule, DetectionModule


def main(args=None) -> LightningCLI:
    return LightningCLI(DetectionModule, CocoDataModule, subclass_mode_data=True, args=args,
                        save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
