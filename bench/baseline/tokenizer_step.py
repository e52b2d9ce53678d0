"""Baseline tokenizer training step: times one VQGAN tokenizer training step in eager PyTorch
(taming-transformers' VQGAN with peco's ViT perceptual loss), doing the work of one step of
`peco-train tokenizer` (trainer/tasks/tokenizer_task.cc):

  forward (bf16 autocast with --precision bf16): z = quant_conv(encoder(x)) in fp32 ->
  quantizer (nearest code, legacy codebook loss, straight-through) -> decoder(post_quant_conv)
  pixel loss (l1 or l2) * pixel_weight + perceptual_weight * ViT perceptual loss
    + codebook_weight * codebook loss
  GAN only from disc_start on (taming computes the generator loss and runs the discriminator
  from step 0 with a zero factor; peco skips them before disc_start): generator hinge loss with
  VQGAN's adaptive weight, then a discriminator step (hinge loss, BatchNorm in train mode).
  Reading the loss value, zero_grad, backward, clip_grad_norm_ (when optim.grad_clip > 0),
  Adam/AdamW step with the config's lr, betas, eps and weight decay.
  peco's dead-code restarts when model.dead_code_steps > 0 (the small preset).

Presets read peco's configs: `paper` = configs/tokenizer_paper.yaml (224 px, f16, 8192 codes,
ViT-B/16 perceptual loss on blocks 3/6/9/12; GAN enabled but starting at step 250001, so a timed
step does no GAN work unless --after_disc_start), `small` = configs/tokenizer_small.yaml (32 px,
f4, 512 codes, a 4-block ViT on blocks 2/4, grad clip 1.0, no GAN). Inputs: real Fashion-MNIST
batches (scale (0.8, 1) crop, flip, [-1, 1]) when the config's data.source is fashion_mnist,
else random images in [-1, 1] (peco's bench runs the paper preset on its synthetic source);
batches are prepared before timing. The learning
rate stays at optim.lr (a schedule changes nothing in the work of a step).

Usage: /usr/bin/python3 bench/baseline/tokenizer_step.py --preset paper|small [--batch N]
         [--precision fp32|bf16] [--after_disc_start] [--threads 2] [--warmup 1] [--steps 3]
"""

import torch

import common
from common import (add_common_flags, add_precision_flag, autocast, count_parameters,
                    emit_result, log, make_parser, setup_threads, time_steps)
from flops import forward_flops
from vqgan import (PRESET_CONFIGS, NLayerDiscriminator, ViTPerceptualLoss, VQModel,
                   adaptive_gan_weight, hinge_d_loss, load_config)


def make_optimizer(job, params):
    kind = torch.optim.AdamW if job.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=job.lr, betas=job.betas, eps=job.eps, weight_decay=job.weight_decay)


class TokenizerStep:
    """One tokenizer training step; call it with images in [-1, 1]."""

    def __init__(self, job, precision, gan_active):
        self.job, self.precision = job, precision
        torch.manual_seed(job.seed)
        self.model = VQModel(job.model).to(common.DEVICE)
        self.model.train()
        self.optimizer = make_optimizer(job, self.model.parameters())
        self.perceptual = None
        if job.perceptual_weight > 0:
            self.perceptual = ViTPerceptualLoss(job.extractor, job.perceptual_blocks,
                                                job.layer_weights,
                                                job.include_cls_token).to(common.DEVICE)
        self.discriminator = None
        if job.gan_enabled:
            self.discriminator = NLayerDiscriminator(3, job.ndf, job.n_layers).to(common.DEVICE)
            self.disc_optimizer = make_optimizer(job, self.discriminator.parameters())
        self.gan_active = gan_active and self.discriminator is not None
        self.step_index = 0
        self.loss_value = float("nan")

    def __call__(self, images):
        job, model = self.job, self.model
        with autocast(self.precision):
            reconstruction, z, codebook = model(images)
        reconstruction = reconstruction.float()
        diff = reconstruction - images
        pixel = diff.abs().mean() if job.pixel == "l1" else diff.pow(2).mean()
        nll = job.pixel_weight * pixel
        if self.perceptual is not None:
            with autocast(self.precision):
                nll = nll + job.perceptual_weight * self.perceptual(reconstruction, images)
        total = nll + job.codebook_weight * codebook.float()
        if self.gan_active:
            self.discriminator.eval()  # the generator pass does not update BatchNorm statistics
            with autocast(self.precision):
                logits_fake = self.discriminator(reconstruction)
            g_loss = -logits_fake.float().mean()
            weight = adaptive_gan_weight(nll, g_loss, model.decoder.conv_out.weight,
                                         job.disc_weight)
            total = total + weight * g_loss
        self.loss_value = total.item()
        self.optimizer.zero_grad()
        total.backward()
        if job.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), job.grad_clip)
        self.optimizer.step()
        if self.gan_active:
            self.discriminator.train()
            with autocast(self.precision):
                logits_real = self.discriminator(images.detach())
                logits_fake = self.discriminator(reconstruction.detach())
            d_loss = hinge_d_loss(logits_real.float(), logits_fake.float())
            self.disc_optimizer.zero_grad()
            d_loss.backward()
            self.disc_optimizer.step()
        if job.model.dead_code_steps > 0:
            generator = torch.Generator().manual_seed(job.seed * 1000003 + self.step_index)
            model.quantize.restart_dead_codes(z, generator)
        self.step_index += 1
        return self.loss_value


def train_flops_per_image(step, size):
    """Model FLOPs of one training image (flops.py): the VQGAN 3x its forward, the frozen
    perceptual ViT 2x on the reconstruction (gradients flow through it) and 1x on the input."""
    x = torch.zeros(1, 3, size, size, device=common.DEVICE)
    flops = 3 * forward_flops(lambda: step.model(x))
    if step.perceptual is not None:
        flops += 3 * forward_flops(lambda: step.perceptual.features(x))
    if step.gan_active:  # generator pass 2x, discriminator step on real and fake 3x each
        flops += 8 * forward_flops(lambda: step.discriminator(x))
    return flops


def fashion_mnist_batches(count, batch, size, seed):
    """`count` batches of Fashion-MNIST tokenizer views (scale (0.8, 1) crop, flip, [-1, 1])."""
    from fashion_mnist import FashionMnist
    from transforms import BeitAugmentation
    transform = BeitAugmentation(size=size, second_size=0, scale=(0.8, 1.0), jitter=0.0,
                                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                 interpolation="bilinear")
    data = FashionMnist(transform=transform)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g)[:count * batch].tolist()
    return [torch.stack([data[i][0] for i in order[k * batch:(k + 1) * batch]])
            for k in range(count)]


def main():
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESET_CONFIGS), default="small")
    parser.add_argument("--config", default="", help="a peco tokenizer YAML (overrides --preset)")
    parser.add_argument("--batch", type=int, default=0,
                        help="0 = 2 for the paper preset, the config's data.batch_size otherwise")
    parser.add_argument("--after_disc_start", action="store_true",
                        help="time a step at or after gan.disc_start (GAN losses and the "
                             "discriminator step run)")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images, whatever the config's data.source (a GPU machine "
                             "has no Fashion-MNIST)")
    add_precision_flag(parser)
    add_common_flags(parser, warmup=1, steps=3)
    args = parser.parse_args()
    threads = setup_threads(args.threads)
    device = common.set_device(args.device)

    job = load_config(args.config or PRESET_CONFIGS[args.preset])
    batch = args.batch or (2 if args.preset == "paper" and not args.config else job.batch_size)
    step = TokenizerStep(job, args.precision, args.after_disc_start)
    size = job.model.resolution
    total_steps = args.warmup + args.steps
    if job.data_source == "fashion_mnist" and not args.synthetic:
        batches = fashion_mnist_batches(total_steps, batch, size, args.seed)
    else:
        g = torch.Generator().manual_seed(args.seed)
        batches = [torch.rand(batch, 3, size, size, generator=g) * 2 - 1
                   for _ in range(total_steps)]
    params = count_parameters(step.model)
    extras = {
        "flops_per_image": train_flops_per_image(step, size),
        "gan_active": step.gan_active,
        "perceptual_parameters": (sum(p.numel() for p in step.perceptual.parameters())
                                  if step.perceptual is not None else 0),
        "discriminator_parameters": (count_parameters(step.discriminator)
                                     if step.discriminator is not None else 0),
    }
    log(f"tokenizer_step baseline: {args.config or args.preset}, {params} parameters, batch "
        f"{batch}, {size} px, {args.precision}, {threads} threads, GAN "
        f"{'active' if step.gan_active else 'inactive'}")

    batches = [b.to(device) for b in batches]
    it = iter(batches)
    seconds = time_steps(lambda: step(next(it)), args.warmup, args.steps)
    emit_result("tokenizer_step", args.config or args.preset, batch, args.precision, threads,
                params, seconds, final_loss=step.loss_value, **extras)


if __name__ == "__main__":
    main()
