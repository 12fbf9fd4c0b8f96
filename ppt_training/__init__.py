"""Training support for train.py: datasets, transforms, metrics, the offline digits preset."""
