"""Baseline end-to-end pre-training: times whole BEiT pre-training steps in eager PyTorch, in
images/s, as BEiT's run_beit_pretraining.py + engine_for_pretraining.py run them with a VQGAN
tokenizer, doing the work of a `peco-train pretrain` step (trainer/tasks/pretrain_task.cc):

  next batch from the DataLoader (data_pipeline's BEiT augmentation + blockwise masks drawn in
  the workers, --workers processes)
  target codes: the frozen tokenizer's encoder + quant_conv + nearest code on the tokenizer view,
  under torch.no_grad() in fp32 (BEiT's d_vae.get_codebook_indices); labels = codes[mask]
  the MIM step of mim_step.py: forward under autocast (bf16) -> cross-entropy -> loss.item() ->
  zero_grad -> backward -> clip_grad_norm_(3.0) -> AdamW step; then the MLM accuracy read-out

Presets:
  paper  BEiT-B/16 (beit_base_patch16_224_8k_vocab) + the paper VQGAN (configs/tokenizer_paper.yaml)
         on a JPEG folder (make_jpegs.py): 224 px views, ColorJitter 0.4, scale (0.08, 1),
         ImageNet mean/std, 75 of 196 patches masked (min block 16), AdamW lr 1.5e-3.
  small  peco's beit_small_fashion_mnist + the small VQGAN (configs/tokenizer_small.yaml) on
         Fashion-MNIST (configs/pretrain_small.yaml): 32 px views, no jitter, scale (0.5, 1),
         mean/std 0.5, 26 of 64 patches masked (min block 4), AdamW lr 1e-3.
The tokenizer has random weights (a trained one does the same work). Each timed step includes
the wait for its batch.

Usage: /usr/bin/python3 bench/baseline/e2e_pretrain.py --preset small|paper [--data|--root DIR]
         [--batch N] [--workers W] [--precision fp32|bf16] [--threads 2] [--warmup 2] [--steps 5]
"""

import torch

from beit import PRESETS as BEIT_PRESETS
from beit import build_beit
from common import (add_common_flags, add_precision_flag, count_parameters, emit_result, log,
                    make_parser, setup_threads, time_steps)
from data_pipeline import TransformOnly, make_loader
from fashion_mnist import DEFAULT_DIR as FASHION_MNIST_DIR
from fashion_mnist import FashionMnist
from flops import forward_flops
from mim_step import MimStep
from transforms import INTERPOLATIONS, BeitAugmentation
from vqgan import VQModel, load_config

E2E_PRESETS = {
    "paper": dict(beit="beit_base_patch16_224_8k_vocab", tokenizer="configs/tokenizer_paper.yaml",
                  batch=8, lr=1.5e-3, scale_min=0.08, jitter=0.4,
                  mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                  num_masking_patches=75, min_num_patches=16),
    "small": dict(beit="beit_small_fashion_mnist", tokenizer="configs/tokenizer_small.yaml",
                  batch=64, lr=1e-3, scale_min=0.5, jitter=0.0,
                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                  num_masking_patches=26, min_num_patches=4),
}


def main():
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(E2E_PRESETS), default="small")
    parser.add_argument("--data", "--root", dest="data", default="",
                        help="JPEG ImageFolder for paper (required); Fashion-MNIST dir for small")
    parser.add_argument("--batch", type=int, default=0, help="0 = the preset's (paper 8, small 64)")
    parser.add_argument("--workers", type=int, default=-1,
                        help="DataLoader worker processes; -1 = threads, 0 = the main process")
    parser.add_argument("--interpolation", choices=sorted(INTERPOLATIONS), default="bicubic")
    parser.add_argument("--second_interpolation", choices=sorted(INTERPOLATIONS),
                        default="lanczos")
    add_precision_flag(parser)
    add_common_flags(parser, warmup=2, steps=5)
    args = parser.parse_args()
    preset = E2E_PRESETS[args.preset]
    if args.preset == "paper" and not args.data:
        parser.error("--data DIR (a JPEG folder from make_jpegs.py) is required for paper")
    threads = setup_threads(args.threads)
    workers = threads if args.workers < 0 else args.workers
    batch = args.batch or preset["batch"]
    torch.manual_seed(args.seed)

    cfg = BEIT_PRESETS[preset["beit"]]
    tok_job = load_config(preset["tokenizer"])
    tokenizer = VQModel(tok_job.model)
    tokenizer.eval()
    for p in tokenizer.parameters():
        p.requires_grad_(False)
    second_size = tok_job.model.resolution
    grid_ratio = 2 ** (len(tok_job.model.ch_mult) - 1)
    if second_size // grid_ratio != cfg.grid:
        raise SystemExit(f"tokenizer grid {second_size // grid_ratio} != ViT grid {cfg.grid}")

    transform = BeitAugmentation(
        size=cfg.img_size, second_size=second_size, scale=(preset["scale_min"], 1.0),
        jitter=preset["jitter"], mean=preset["mean"], std=preset["std"],
        interpolation=args.interpolation, second_interpolation=args.second_interpolation,
        num_masking_patches=preset["num_masking_patches"], mask_grid=cfg.grid,
        min_num_patches=preset["min_num_patches"])
    if args.preset == "paper":
        dataset = TransformOnly(args.data, transform)
    else:
        dataset = FashionMnist(args.data or FASHION_MNIST_DIR, "train", transform)
    loader = make_loader(dataset, batch, workers, args.warmup + args.steps, args.seed)

    model = build_beit(preset["beit"])
    model.train()
    mim = MimStep(model, args.precision, lr=preset["lr"])
    params = count_parameters(model)
    log(f"e2e_pretrain baseline: {args.preset}, BEiT {params} parameters, tokenizer "
        f"{sum(p.numel() for p in tokenizer.parameters())} (frozen), {len(dataset)} images, batch "
        f"{batch}, {workers} workers, {args.precision}, {threads} threads")

    one = torch.zeros(1, 3, cfg.img_size, cfg.img_size)
    one_mask = torch.zeros(1, cfg.num_patches, dtype=torch.bool)
    one_mask[0, :preset["num_masking_patches"]] = True
    flops = (3 * forward_flops(lambda: model(one, one_mask)) +
             forward_flops(lambda: tokenizer.get_codebook_indices(
                 torch.zeros(1, 3, second_size, second_size))))
    it = iter(loader)
    stats = {"masked": 0, "images": 0, "acc": 0.0}

    def step():
        samples, tokenizer_view, masks = next(it)
        with torch.no_grad():
            codes = tokenizer.get_codebook_indices(tokenizer_view).flatten(1)
            labels = codes[masks]
        mim(samples, masks, labels)
        stats["acc"] = (mim.logits.argmax(-1) == labels).float().mean().item()
        stats["masked"] += int(masks.sum())
        stats["images"] += masks.shape[0]

    seconds = time_steps(step, args.warmup, args.steps)
    emit_result("e2e_pretrain", args.preset, batch, args.precision, threads, params, seconds,
                workers=workers, flops_per_image=flops,
                tokenizer_parameters=sum(p.numel() for p in tokenizer.parameters()),
                masked_per_image=stats["masked"] / max(1, stats["images"]),
                final_mlm_acc=stats["acc"],
                final_loss=mim.loss_value)


if __name__ == "__main__":
    main()
