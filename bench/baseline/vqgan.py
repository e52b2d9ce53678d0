"""The VQGAN tokenizer and its training losses in eager PyTorch, following taming-transformers:

  Encoder / Decoder   ResnetBlock (GroupNorm(32, eps 1e-6) + swish + 3x3 conv, 1x1 nin_shortcut
                      when the width changes), single-head AttnBlock at the configured
                      resolutions, Downsample (pad right/bottom by one, 3x3 stride-2 conv),
                      Upsample (nearest x2, 3x3 conv), mid block_1 / attn_1 / block_2.
  VectorQuantizer     nearest code by squared distance, legacy beta loss form
                      mean((sg[z_q] - z)^2) + beta mean((z_q - sg[z])^2), straight-through.
  VQModel             encoder, decoder, quantize, quant_conv, post_quant_conv (taming's names).
  NLayerDiscriminator PatchGAN (ndf 64, n_layers 3, BatchNorm), pix2pix init.
  ViTPerceptualLoss   peco's perceptual distance: a frozen MoCo v3 / timm ViT (fixed 2-D sin-cos
                      position embedding); images in [-1, 1] -> [0, 1] -> ImageNet mean/std ->
                      bilinear resize to the ViT's size when needed; token sequences (CLS
                      included unless configured otherwise) after the configured blocks, before
                      the final norm; loss = sum_l w_l mean((f_l(rec) - f_l(x))^2), the target
                      branch without autograd.

Model fields come from peco's tokenizer configs (configs/tokenizer_paper.yaml,
configs/tokenizer_small.yaml), read with load_config().

Self-check: `python3 vqgan.py --preset paper --check_keys FILE` compares the VQModel's
state_dict names, order and shapes with a key file and prints the parameter counts.
"""

import os
from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from beit import Mlp
from common import Fp32GroupNorm, Fp32LayerNorm, count_parameters, log, make_parser, run_key_check

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PRESET_CONFIGS = {"paper": "configs/tokenizer_paper.yaml", "small": "configs/tokenizer_small.yaml"}


# ----------------------------------------------------------------------------- configuration

@dataclass
class VqganConfig:
    resolution: int = 256
    ch: int = 128
    ch_mult: List[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    attn_resolutions: List[int] = field(default_factory=lambda: [16])
    z_channels: int = 256
    dropout: float = 0.0
    n_embed: int = 8192
    embed_dim: int = 256
    beta: float = 0.25
    legacy_loss: bool = True
    dead_code_steps: int = 0  # peco's dead-code restarts (not in taming); 0 = off


@dataclass
class VitConfig:
    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0


@dataclass
class TokenizerJob:
    """The fields of a peco tokenizer config that shape one training step."""
    model: VqganConfig
    extractor: VitConfig
    batch_size: int = 32
    pixel: str = "l1"
    pixel_weight: float = 1.0
    codebook_weight: float = 1.0
    perceptual_weight: float = 0.0
    perceptual_blocks: List[int] = field(default_factory=lambda: [3, 6, 9, 12])
    layer_weights: List[float] = field(default_factory=list)
    include_cls_token: bool = True
    gan_enabled: bool = False
    disc_weight: float = 0.8
    disc_start: int = 0
    ndf: int = 64
    n_layers: int = 3
    optimizer: str = "adam"
    lr: float = 1e-4
    betas: tuple = (0.5, 0.9)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0
    data_source: str = "fashion_mnist"


def load_config(path):
    """Reads a peco tokenizer YAML config (the fields above; others are ignored)."""
    if not os.path.isabs(path):
        path = os.path.join(REPO, path)
    with open(path) as f:
        c = yaml.safe_load(f)
    m, loss, optim = c.get("model", {}), c.get("loss", {}), c.get("optim", {})
    data = c.get("data", {})
    model = VqganConfig(resolution=int(data.get("image_size", 32)))
    for key in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "dropout",
                "n_embed", "embed_dim", "beta", "legacy_loss", "dead_code_steps"):
        if key in m:
            setattr(model, key, m[key])
    perceptual = loss.get("perceptual", {})
    extractor = VitConfig(**perceptual.get("extractor", {}))
    gan = loss.get("gan", {})
    job = TokenizerJob(model=model, extractor=extractor)
    job.batch_size = int(data.get("batch_size", job.batch_size))
    job.pixel = loss.get("pixel", job.pixel)
    job.pixel_weight = float(loss.get("pixel_weight", job.pixel_weight))
    job.codebook_weight = float(loss.get("codebook_weight", job.codebook_weight))
    job.perceptual_weight = float(loss.get("perceptual_weight", job.perceptual_weight))
    job.perceptual_blocks = list(perceptual.get("blocks", job.perceptual_blocks))
    job.layer_weights = list(perceptual.get("layer_weights", []))
    job.include_cls_token = bool(perceptual.get("include_cls_token", True))
    job.gan_enabled = bool(gan.get("enabled", False))
    job.disc_weight = float(gan.get("disc_weight", job.disc_weight))
    job.disc_start = int(gan.get("disc_start", job.disc_start))
    job.ndf = int(gan.get("ndf", job.ndf))
    job.n_layers = int(gan.get("n_layers", job.n_layers))
    job.optimizer = optim.get("optimizer", job.optimizer)
    job.lr = float(optim.get("lr", job.lr))
    job.betas = tuple(float(b) for b in optim.get("betas", job.betas))
    job.eps = float(optim.get("eps", job.eps))
    job.weight_decay = float(optim.get("weight_decay", job.weight_decay))
    job.grad_clip = float(optim.get("grad_clip", job.grad_clip))
    job.seed = int(c.get("seed", 0))
    job.data_source = data.get("source", job.data_source)
    return job


# ----------------------------------------------------------------------------- VQGAN

def Normalize(channels):
    return Fp32GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x):
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels, out_channels, dropout):
        super().__init__()
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0)
        else:
            self.nin_shortcut = None

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return shortcut + h


class AttnBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)  # [b, hw, c]
        k = k.reshape(b, c, hh * ww)                   # [b, c, hw]
        w = torch.bmm(q, k) * (int(c) ** -0.5)          # [b, hw(query), hw(key)]
        w = F.softmax(w, dim=2)
        v = v.reshape(b, c, hh * ww)
        out = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=1, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Mid(nn.Module):
    def __init__(self, channels, dropout):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg, in_channels=3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, cfg.ch, 3, stride=1, padding=1)
        res = cfg.resolution
        block_in = cfg.ch
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.ch_mult):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_out = cfg.ch * mult
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, cfg.dropout))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in))
            if level != len(cfg.ch_mult) - 1:
                stage.downsample = Downsample(block_in)
                res //= 2
            self.down.append(stage)
        self.mid = Mid(block_in, cfg.dropout)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, 3, stride=1, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg, out_channels=3):
        super().__init__()
        levels = len(cfg.ch_mult)
        block_in = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // 2 ** (levels - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, stride=1, padding=1)
        self.mid = Mid(block_in, cfg.dropout)
        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_out = cfg.ch * cfg.ch_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, cfg.dropout))
                block_in = block_out
                if res in cfg.attn_resolutions:
                    stage.attn.append(AttnBlock(block_in))
            if level != 0:
                stage.upsample = Upsample(block_in)
                res *= 2
            self.up.insert(0, stage)  # index = level, 0 at the highest resolution
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, stride=1, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn) > 0:
                    h = stage.attn[i](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """taming's VectorQuantizer2 (legacy loss form by default). Runs in fp32: the nearest-code
    search and the codebook loss do not depend on bf16 rounding (as peco's quantizer)."""

    def __init__(self, n_embed, embed_dim, beta, legacy=True, dead_code_steps=0):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta, self.legacy = n_embed, embed_dim, beta, legacy
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)
        self.dead_code_steps = dead_code_steps
        if dead_code_steps > 0:  # peco's dead-code restart bookkeeping
            self.register_buffer("steps_since_used", torch.zeros(n_embed, dtype=torch.long))

    @torch.no_grad()
    def nearest_codes(self, z_flat):
        e = self.embedding.weight.float()
        z = z_flat.float()
        d = (z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1)
             - 2 * torch.einsum("bd,dn->bn", z, e.t()))
        return d.argmin(1)

    def forward(self, z):
        z = z.permute(0, 2, 3, 1).contiguous()
        idx = self.nearest_codes(z.view(-1, self.embed_dim).detach())
        z_q = self.embedding(idx).view(z.shape).to(z.dtype)
        codebook = torch.mean((z_q - z.detach()) ** 2)
        commitment = torch.mean((z_q.detach() - z) ** 2)
        if self.legacy:
            loss = commitment + self.beta * codebook
        else:
            loss = codebook + self.beta * commitment
        z_q = z + (z_q - z).detach()
        if self.training and self.dead_code_steps > 0:
            with torch.no_grad():
                used = torch.bincount(idx, minlength=self.n_embed) > 0
                self.steps_since_used.add_(1).masked_fill_(used, 0)
        return z_q.permute(0, 3, 1, 2).contiguous(), loss, idx.view(z.shape[:-1])

    @torch.no_grad()
    def restart_dead_codes(self, z, generator=None):
        """peco's dead-code restart: codes unused for dead_code_steps steps are set to random
        encoder outputs of this batch. Returns the number of codes restarted."""
        if self.dead_code_steps <= 0:
            return 0
        dead = (self.steps_since_used >= self.dead_code_steps).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.embed_dim).float()
        pick = torch.randint(flat.shape[0], (dead.numel(),), generator=generator)
        self.embedding.weight.index_copy_(0, dead, flat[pick].to(self.embedding.weight.dtype))
        self.steps_since_used.index_fill_(0, dead, 0)
        return int(dead.numel())


class VQModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, cfg.beta, cfg.legacy_loss,
                                        cfg.dead_code_steps)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def encode(self, x):
        """(z [fp32], z_q, codebook loss, indices)."""
        z = self.quant_conv(self.encoder(x)).float()
        z_q, loss, idx = self.quantize(z)
        return z, z_q, loss, idx

    def decode(self, z_q):
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x):
        z, z_q, loss, idx = self.encode(x)
        return self.decode(z_q), z, loss

    @torch.no_grad()
    def get_codebook_indices(self, x):
        """[B, h, w] code indices of images in [-1, 1] (what BEiT's engine uses as targets)."""
        z = self.quant_conv(self.encoder(x))
        b, d, h, w = z.shape
        return self.quantize.nearest_codes(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)


# ----------------------------------------------------------------------------- discriminator

class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix / taming) with BatchNorm."""

    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False),
                   nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.main = nn.Sequential(*layers)
        for m in self.modules():  # weights_init
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.main(x)


def hinge_d_loss(logits_real, logits_fake):
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_gan_weight(nll_loss, g_loss, last_layer, disc_weight):
    """VQGAN's calculate_adaptive_weight on the decoder's last conv weight."""
    nll_grad = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = nll_grad.norm() / (g_grad.norm() + 1e-4)
    return (torch.clamp(weight, 0.0, 1e4) * disc_weight).detach()


# ----------------------------------------------------------------------------- perceptual ViT

def sincos_pos_embed(grid, dim, temperature=10000.0):
    """MoCo v3's fixed 2-D sin-cos position embedding with a zero CLS slot: [1, 1 + grid^2, dim]."""
    coords = torch.arange(grid, dtype=torch.float32)
    grid_w, grid_h = torch.meshgrid(coords, coords, indexing="ij")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    out_w = torch.einsum("m,d->md", grid_w.flatten(), omega)
    out_h = torch.einsum("m,d->md", grid_h.flatten(), omega)
    pos = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), pos], dim=0).unsqueeze(0)


class VitAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class VitBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = Fp32LayerNorm(dim, eps=1e-6)
        self.attn = VitAttention(dim, num_heads)
        self.norm2 = Fp32LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VitPatchEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)


class VitExtractor(nn.Module):
    """A timm / MoCo v3 ViT whose block outputs are the perceptual features. Frozen."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        grid = cfg.img_size // cfg.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(grid, cfg.embed_dim), requires_grad=False)
        self.patch_embed = VitPatchEmbed(cfg)
        self.blocks = nn.ModuleList(VitBlock(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio)
                                    for _ in range(cfg.depth))
        self.norm = Fp32LayerNorm(cfg.embed_dim, eps=1e-6)
        # Random timm-style init; the weights do not change the work of a step.
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embed.proj.weight.view(cfg.embed_dim, -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def block_outputs(self, x, blocks):
        """Token sequences [B, 1 + N, D] after each block in `blocks` (counted from 1)."""
        h = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1).to(h.dtype), h], dim=1)
        h = h + self.pos_embed.to(h.dtype)
        after = {}
        for i in range(max(blocks)):
            h = self.blocks[i](h)
            after[i + 1] = h
        return [after[b] for b in blocks]


class ViTPerceptualLoss(nn.Module):
    """peco's perceptual loss over a frozen ViT (see the module docstring)."""

    def __init__(self, vit_cfg, blocks, layer_weights=(), include_cls_token=True):
        super().__init__()
        self.net = VitExtractor(vit_cfg)
        self.blocks = list(blocks)
        self.layer_weights = list(layer_weights) or [1.0] * len(self.blocks)
        self.include_cls_token = include_cls_token
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def features(self, images):
        x = (images + 1.0) * 0.5
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        size = self.net.cfg.img_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        feats = self.net.block_outputs(x, self.blocks)
        if not self.include_cls_token:
            feats = [f[:, 1:] for f in feats]
        return feats

    def forward(self, reconstruction, target):
        with torch.no_grad():
            target_feats = self.features(target.detach())
        rec_feats = self.features(reconstruction)
        total = torch.zeros((), dtype=torch.float32, device=reconstruction.device)
        for w, fr, ft in zip(self.layer_weights, rec_feats, target_feats):
            total = total + w * torch.mean((fr.float() - ft.float()) ** 2)
        return total


# ----------------------------------------------------------------------------- self-check

def main():
    parser = make_parser(__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESET_CONFIGS), default="paper")
    parser.add_argument("--config", default="", help="a peco tokenizer YAML (overrides --preset)")
    parser.add_argument("--check_keys", default="", help="key file to compare the VQModel with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    job = load_config(args.config or PRESET_CONFIGS[args.preset])
    torch.manual_seed(job.seed)
    model = VQModel(job.model)
    log(f"VQModel ({args.config or args.preset}): {count_parameters(model)} parameters")
    log(f"  encoder {count_parameters(model.encoder)}, decoder {count_parameters(model.decoder)}, "
        f"codebook {count_parameters(model.quantize)}")
    if job.gan_enabled:
        disc = NLayerDiscriminator(3, job.ndf, job.n_layers)
        log(f"NLayerDiscriminator: {count_parameters(disc)} parameters")
    if job.perceptual_weight > 0:
        vit = VitExtractor(job.extractor)
        log(f"perceptual ViT: {sum(p.numel() for p in vit.parameters())} parameters (frozen)")
    if args.check_keys:
        run_key_check(model, args.check_keys)


if __name__ == "__main__":
    main()
