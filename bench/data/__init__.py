"""Datasets: images as uint8 tensors split into views read a batch at a time, the dataset registry, the decode
cache, readers of standard formats and image folders, and augmentation on the training device.

    splits.py    Dataset, Split, Splits, Normalizer: views, batches, normalization
    registry.py  what dataset plugins registered, and the request a loader receives
    cache.py     decoded arrays kept as .npy files and read as memory maps
    readers.py   IDX and CIFAR-10 files
    folders.py   image folders: files, classes, sizes, parallel decoding
    augment.py   flips, crops, translations, grayscale on the device"""
