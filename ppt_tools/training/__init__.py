"""What train.py needs beyond the core: its options, the fine-tuning recipe and presets (`arguments`), and the model and
image processor it fine-tunes (`modeling`)."""
