"""Baseline MIM training step: times one BEiT masked-image-modeling step in eager PyTorch,
as BEiT's pre-training engine (train_one_epoch) runs it: model(images, bool_masked_pos) gives
the logits of the masked tokens, cross-entropy against integer targets, backward,
clip_grad_norm_(3.0), AdamW(lr 1.5e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.05 without
decay for 1-D parameters, biases and cls_token) over BEiT's parameter groups.

The timed region equals peco's bench/mim_step.cc: zero_grad, forward (bf16 autocast when
--precision bf16), cross-entropy on fp32 logits, backward, clipping, optimizer step, and reading
the loss value. Images (random normal), masks and targets (random codes) are fixed for the run.
Masks hold exactly 75 of 196 random patches at 224/16 and round(0.4 N) otherwise (26 of 64 for
the small preset), as peco's benchmark does; BEiT's blockwise masks mask the same number or
slightly fewer, which changes nothing in the work of a step but the lm_head row count.

Usage: /usr/bin/python3 bench/baseline/mim_step.py --preset beit_small_fashion_mnist --batch 8
         [--precision fp32|bf16] [--threads 2] [--warmup 3] [--steps 5] [--seed 0]
"""

import torch
import torch.nn.functional as F

from beit import PRESETS, build_beit, parameter_groups
from common import (add_common_flags, add_precision_flag, autocast, count_parameters,
                    emit_result, log, make_parser, set_device, setup_threads, time_steps)
from flops import forward_flops
from masking import random_count_masks


def masked_count(num_patches):
    """BEiT's 75 of 196 at 224/16; otherwise round(0.4 N), as peco's benchmark."""
    return 75 if num_patches == 196 else (num_patches * 2 + 2) // 5


class MimStep:
    """One BEiT pre-training step over fixed inputs; call it to run a step."""

    def __init__(self, model, precision, lr=1.5e-3, weight_decay=0.05, clip_grad=3.0):
        self.model = model
        self.precision = precision
        self.clip_grad = clip_grad
        self.optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr,
                                           betas=(0.9, 0.999), eps=1e-8)
        self.loss_value = float("nan")
        self.logits = None  # the last step's masked-token logits (detached)

    def __call__(self, images, bool_masked_pos, labels):
        self.optimizer.zero_grad()
        with autocast(self.precision):
            logits = self.model(images, bool_masked_pos)
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        self.optimizer.step()
        self.loss_value = loss.item()
        self.logits = logits.detach()
        return self.loss_value


def main():
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        default="beit_base_patch16_224_8k_vocab")
    parser.add_argument("--batch", type=int, default=8)
    add_precision_flag(parser)
    add_common_flags(parser, warmup=3, steps=5)
    parser.add_argument("--profile", default="",
                        help="write a chrome trace of one more step to PREFIX.<precision>.json "
                             "(bench/trace_summary.py summarises it)")
    args = parser.parse_args()
    threads = setup_threads(args.threads)
    device = set_device(args.device)

    torch.manual_seed(args.seed)
    cfg = PRESETS[args.preset]
    model = build_beit(args.preset).to(device)
    model.train()
    step = MimStep(model, args.precision)
    n = cfg.num_patches
    masked = masked_count(n)
    images = torch.randn(args.batch, cfg.in_chans, cfg.img_size, cfg.img_size).to(device)
    masks = random_count_masks(args.batch, n, masked).to(device)
    targets = torch.randint(cfg.vocab_size, (args.batch * masked,)).to(device)
    params = count_parameters(model)
    log(f"mim_step baseline: {args.preset}, {params} parameters, batch {args.batch}, "
        f"{masked}/{n} masked, {args.precision}, {threads} threads")

    one_mask = torch.zeros(1, n, dtype=torch.bool, device=device)
    one_mask[0, :masked] = True
    flops = 3 * forward_flops(lambda: model(images[:1], one_mask))
    seconds = time_steps(lambda: step(images, masks, targets), args.warmup, args.steps)
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step(images, masks, targets)
        prof.export_chrome_trace(f"{args.profile}.{args.precision}.json")
    emit_result("mim_step", args.preset, args.batch, args.precision, threads, params, seconds,
                masked_per_image=masked, flops_per_image=flops, final_loss=step.loss_value)


if __name__ == "__main__":
    main()
