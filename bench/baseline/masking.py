"""Masks for masked image modeling.

BlockMasking follows BEiT's blockwise MaskingGenerator: rectangles of a random area in
[min_num_patches, room] and log-uniform aspect ratio are added until num_masking_patches cells
are masked (or a block adds nothing); a block makes up to 10 attempts. The count is at most
num_masking_patches and sometimes a little below.

random_count_masks gives exactly `count` random patches per image: the masks peco's
bench/mim_step.cc times with, so the two MIM-step benchmarks do identical work.
"""

import math
import random

import numpy as np
import torch


class BlockMasking:
    def __init__(self, grid, num_masking_patches, min_num_patches=16, max_num_patches=None,
                 min_aspect=0.3, max_aspect=None):
        self.height = self.width = grid
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1.0 / min_aspect
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect))

    def _add_block(self, mask, room, rng):
        added = 0
        for _ in range(10):
            area = rng.uniform(self.min_num_patches, room)
            aspect = math.exp(rng.uniform(*self.log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if w < self.width and h < self.height:
                top = rng.randint(0, self.height - h)
                left = rng.randint(0, self.width - w)
                window = mask[top:top + h, left:left + w]
                new = h * w - int(window.sum())
                if 0 < new <= room:
                    window[...] = 1
                    added += new
            if added > 0:
                break
        return added

    def __call__(self, rng=random):
        """A [grid, grid] uint8 mask (1 = masked), drawn from `rng` (Python's random API)."""
        mask = np.zeros((self.height, self.width), dtype=np.uint8)
        count = 0
        while count < self.num_masking_patches:
            room = min(self.num_masking_patches - count, self.max_num_patches)
            added = self._add_block(mask, room, rng)
            if added == 0:
                break
            count += added
        return mask


def random_count_masks(batch, num_patches, count, generator=None):
    """[batch, num_patches] bool masks with exactly `count` random patches per row."""
    order = torch.rand(batch, num_patches, generator=generator).argsort(dim=1)
    return order < count
