"""Few-label heads on a pretrained encoder: image classifier and U-Net segmenter."""
