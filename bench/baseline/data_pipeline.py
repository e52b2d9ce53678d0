"""Baseline data pipeline: times BEiT's pre-training data path in a torch DataLoader, in images/s:
torchvision ImageFolder over a folder of JPEGs (PIL decode, convert to RGB) -> BEiT's
augmentation (transforms.BeitAugmentation: ColorJitter(0.4, 0.4, 0.4) on the decoded image,
RandomHorizontalFlip, one RandomResizedCrop box (scale (0.08, 1), ratio (3/4, 4/3)) resized to
the ViT view (bicubic) and the tokenizer view (lanczos), ToTensor, ViT view normalised with
ImageNet mean/std, tokenizer view in [-1, 1]) -> default collate into batches, --workers worker
processes, a random sampler without replacement (reshuffled every pass over the folder).

Each timed step is one `next()` on the loader (the wait for the next batch) after --warmup
batches, which also absorb the worker start-up. --num_masking_patches N adds BEiT's blockwise
mask, drawn in the workers as BEiT's transform does (off by default).

Usage: /usr/bin/python3 bench/baseline/data_pipeline.py --data|--root DIR [--batch 64]
         [--workers W] [--size 224] [--second_size 224] [--threads 2] [--warmup 2] [--steps 10]
Make DIR with bench/baseline/make_jpegs.py.
"""

import torch
import torchvision

from common import add_common_flags, emit_result, log, make_parser, setup_threads, time_steps
from transforms import INTERPOLATIONS, BeitAugmentation


def add_data_flags(parser):
    parser.add_argument("--data", "--root", dest="data", default="",
                        help="ImageFolder directory of JPEGs")
    parser.add_argument("--workers", type=int, default=-1,
                        help="DataLoader worker processes; -1 = threads, 0 = the main process")
    parser.add_argument("--size", type=int, default=224, help="ViT view side")
    parser.add_argument("--second_size", type=int, default=224, help="tokenizer view side")
    parser.add_argument("--scale_min", type=float, default=0.08)
    parser.add_argument("--jitter", type=float, default=0.4, help="ColorJitter strength; 0 = off")
    parser.add_argument("--interpolation", choices=sorted(INTERPOLATIONS), default="bicubic")
    parser.add_argument("--second_interpolation", choices=sorted(INTERPOLATIONS),
                        default="lanczos")
    return parser


def image_folder_transform(args, num_masking_patches=0, mask_grid=14, min_num_patches=16):
    return BeitAugmentation(size=args.size, second_size=args.second_size,
                            scale=(args.scale_min, 1.0), jitter=args.jitter,
                            interpolation=args.interpolation,
                            second_interpolation=args.second_interpolation,
                            num_masking_patches=num_masking_patches, mask_grid=mask_grid,
                            min_num_patches=min_num_patches)


class TransformOnly(torch.utils.data.Dataset):
    """An ImageFolder whose items are the transform's views (the class label dropped)."""

    def __init__(self, root, transform):
        self.folder = torchvision.datasets.ImageFolder(root, transform=transform)

    def __len__(self):
        return len(self.folder)

    def __getitem__(self, index):
        views, _ = self.folder[index]
        return views


def make_loader(dataset, batch, workers, batches_needed, seed):
    """BEiT's loader: random sampler, drop_last, `workers` processes, enough samples for
    `batches_needed` batches (several shuffled passes when the dataset is small)."""
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=False,
                                             num_samples=batches_needed * batch,
                                             generator=generator)
    return torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler,
                                       num_workers=workers, drop_last=True,
                                       pin_memory=torch.cuda.is_available(),
                                       persistent_workers=False)


def main():
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--num_masking_patches", type=int, default=0)
    add_data_flags(parser)
    add_common_flags(parser, warmup=2, steps=10)
    args = parser.parse_args()
    if not args.data:
        parser.error("--data DIR is required (make one with make_jpegs.py)")
    threads = setup_threads(args.threads)
    workers = threads if args.workers < 0 else args.workers
    torch.manual_seed(args.seed)
    grid = args.size // 16
    dataset = TransformOnly(args.data, image_folder_transform(args, args.num_masking_patches, grid))
    loader = make_loader(dataset, args.batch, workers, args.warmup + args.steps, args.seed)
    log(f"data_pipeline baseline: {len(dataset)} images in {args.data}, batch {args.batch}, "
        f"views {args.size}/{args.second_size}, {workers} workers, {threads} threads")
    it = iter(loader)
    shapes = []

    def step():
        batch = next(it)
        if not shapes:
            shapes.extend(list(t.shape) for t in batch)

    seconds = time_steps(step, args.warmup, args.steps, label="batch")
    # A pipeline's batches arrive unevenly (workers finish in bursts): the rate is the total
    # images over the total time, not batch / median.
    emit_result("data_pipeline", f"image_folder_{args.size}_{args.second_size}", args.batch,
                "fp32", threads, 0, seconds, workers=workers, images=len(dataset),
                view_shapes=shapes,
                images_per_second=args.batch * len(seconds) / sum(seconds))


if __name__ == "__main__":
    main()
