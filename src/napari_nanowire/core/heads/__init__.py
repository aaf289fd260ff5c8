"""Few-label heads on a pretrained encoder: image classifier and U-Net segmenter.

- ``features``: input preparation shared by both heads, pooled features, adding a head to a file
- ``classify``: the linear classifier on frozen (or fine-tuned) features
- ``segment``: training the U-Net segmenter from strokes or dense masks
- ``unet``: the U-Net decoder and tiled prediction with it
- ``tiling``: tile positions, blending weights and streamed sliding windows
"""
