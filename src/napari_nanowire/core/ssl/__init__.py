"""Self-supervised pretraining of an encoder: crops, augmentations, losses and the loop.

- ``crops``: random resized crops from images of any size, batched on the device
- ``augment``: TEM-like augmentations (blur, dose noise, contrast, symmetries)
- ``losses``: SimCLR (NT-Xent) and Barlow Twins losses
- ``monitor``: learning-rate schedule, step seeds, embedding spread, k-NN accuracy
- ``runtime``: device, CPU threads and DistributedDataParallel process groups
- ``config``: the pretraining settings and the encoder-plus-projector network
- ``pretrain``: the training loop, resumable, writing the encoder model file
"""
