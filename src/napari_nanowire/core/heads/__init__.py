"""Few-label heads on a pretrained encoder: image classifier and U-Net segmenter.

- ``features``: input preparation shared by both heads, pooled features, adding a head to a file
- ``classify``: the image classifier on multi-scale encoder features and image descriptors
- ``feature_cache``: its features kept in memory between runs over the same images
- ``linear``: its class-balanced logistic-regression head
- ``calibrate``: held-out predictions, temperature scaling, calibration error
- ``morph_features``: hand-made image descriptors and measurements of predicted masks
- ``segment``: training the U-Net segmenter from strokes or dense masks (+ unlabelled frames)
- ``seg_augment``: segmentation augmentations and the FixMatch consistency loss
- ``seg_validation``: held-out labels, IoU/Dice and early stopping
- ``unet``: the U-Net decoder and tiled prediction with it
- ``scale``: the working scale both segmenter paths resample to and back from
- ``postprocess``: removing specks and filling holes by area in nm^2 (or px^2)
- ``scalebar``: burned-in scale bars, databars and labels, ignored in training and prediction
  (painted over for the classifier)
- ``tiling``: tile positions, blending weights and streamed sliding windows
"""
