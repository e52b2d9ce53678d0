"""Fashion-MNIST as a torch Dataset, read from the gzipped IDX files
(train-images-idx3-ubyte.gz / train-labels-idx1-ubyte.gz, or t10k-* for the test split) in
/usr/share/datasets/fashion-mnist, as peco's fashion_mnist source reads them: 28x28 greyscale
images, replicated to RGB before the transform (peco's to_rgb).
"""

import gzip
import os

import numpy as np
import torch.utils.data
from PIL import Image

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051:
        raise ValueError(f"{path}: not an IDX image file (magic {magic})")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != 2049:
        raise ValueError(f"{path}: not an IDX label file (magic {magic})")
    return np.frombuffer(data, dtype=np.uint8, offset=8)


class FashionMnist(torch.utils.data.Dataset):
    """Items are transform(PIL RGB image); without a transform, (image, label)."""

    def __init__(self, root=DEFAULT_DIR, split="train", transform=None):
        prefix = "train" if split == "train" else "t10k"
        self.images = read_idx_images(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
        self.labels = read_idx_labels(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        img = Image.fromarray(self.images[index], mode="L").convert("RGB")
        if self.transform is None:
            return img, int(self.labels[index])
        return self.transform(img)
