"""BEiT's pre-training data augmentation (DataAugmentationForBEiT) on PIL images:

  ColorJitter(brightness, contrast, saturation)   on the decoded image (0 = off)
  RandomHorizontalFlip(0.5)
  one RandomResizedCrop box (scale, ratio (3/4, 4/3)) resized twice, as BEiT's
  RandomResizedCropAndInterpolationWithTwoPic: the ViT view with bicubic, the tokenizer view
  with lanczos
  ToTensor; the ViT view normalised with mean/std, the tokenizer view mapped to [-1, 1]
  (VQGAN's input range)
  optionally BEiT's blockwise mask, drawn in the worker as BEiT's transform does

With second_size = 0 only the ViT view is made (a tokenizer's training view: pass mean = std =
0.5 for [-1, 1]).
"""

import random

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from masking import BlockMasking

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "lanczos": InterpolationMode.LANCZOS,
}


class RandomResizedCropTwoPic:
    """One random crop box resized to `size` and (when second_size > 0) `second_size`."""

    def __init__(self, size, second_size=0, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 interpolation="bicubic", second_interpolation="lanczos"):
        self.size, self.second_size = size, second_size
        self.scale, self.ratio = scale, ratio
        self.interpolation = INTERPOLATIONS[interpolation]
        self.second_interpolation = INTERPOLATIONS[second_interpolation]

    def __call__(self, img):
        top, left, h, w = T.RandomResizedCrop.get_params(img, self.scale, self.ratio)
        first = TF.resized_crop(img, top, left, h, w, [self.size, self.size], self.interpolation)
        if not self.second_size:
            return first, None
        second = TF.resized_crop(img, top, left, h, w, [self.second_size, self.second_size],
                                 self.second_interpolation)
        return first, second


class BeitAugmentation:
    """PIL RGB image -> (vit_view, tokenizer_view or absent, mask or absent), as tensors."""

    def __init__(self, size=224, second_size=224, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 jitter=0.4, flip=True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 interpolation="bicubic", second_interpolation="lanczos",
                 num_masking_patches=0, mask_grid=14, min_num_patches=16, min_aspect=0.3):
        ops = []
        if jitter > 0:
            ops.append(T.ColorJitter(jitter, jitter, jitter))
        if flip:
            ops.append(T.RandomHorizontalFlip(p=0.5))
        self.common = T.Compose(ops)
        self.crop = RandomResizedCropTwoPic(size, second_size, scale, ratio, interpolation,
                                            second_interpolation)
        self.vit = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
        self.masking = (BlockMasking(mask_grid, num_masking_patches, min_num_patches,
                                     min_aspect=min_aspect) if num_masking_patches > 0 else None)

    def __call__(self, img):
        first, second = self.crop(self.common(img))
        out = [self.vit(first)]
        if second is not None:
            out.append(TF.to_tensor(second) * 2.0 - 1.0)  # [0, 1] -> [-1, 1]
        if self.masking is not None:
            out.append(torch.from_numpy(self.masking(random)).flatten().bool())
        return tuple(out)
