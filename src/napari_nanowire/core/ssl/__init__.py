"""Self-supervised pretraining of an encoder: crops, augmentations, losses and the loop."""
