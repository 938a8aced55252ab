"""``python train.py [overrides]``: the same command as ``rcnn-train`` (see
detector/cli/train.py), for a checkout without an installed package."""

from detector.cli.train import main

if __name__ == "__main__":
    main()
