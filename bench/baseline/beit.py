"""BEiT masked-image-modeling model in eager PyTorch, following the official BEiT pre-training
model (VisionTransformerForMaskedImageModeling): conv patch embedding, CLS token, a mask token
blended into the masked patch embeddings, one relative position bias shared by all blocks (no
absolute position embedding), pre-norm blocks with q/v biases and LayerScale, final norm, and an
lm_head applied only to the masked positions. Official initialisation (truncated normal cut at
+-std, residual projections rescaled by 1/sqrt(2 * layer_id)).

Presets: beit_base_patch16_224_8k_vocab and peco's beit_small_fashion_mnist.

Self-check: `python3 beit.py --preset beit_base_patch16_224_8k_vocab --check_keys FILE`
compares state_dict names, order and shapes with a key file and prints the parameter count.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import Fp32LayerNorm, count_parameters, log, make_parser, run_key_check


@dataclass
class BeitConfig:
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    vocab_size: int = 8192
    drop_path_rate: float = 0.1
    init_values: float = 0.1  # LayerScale gamma_1 / gamma_2 start value
    init_std: float = 0.02
    norm_eps: float = 1e-6

    @property
    def grid(self):
        return self.img_size // self.patch_size

    @property
    def num_patches(self):
        return self.grid * self.grid


PRESETS = {
    "beit_base_patch16_224_8k_vocab": BeitConfig(),
    # peco's small preset (trainer/models/beit_config.cc): 32 px, patch 4 (8x8 grid), 192 wide,
    # 6 blocks, 3 heads, 512 codes; the rest as the base preset.
    "beit_small_fashion_mnist": BeitConfig(img_size=32, patch_size=4, embed_dim=192, depth=6,
                                           num_heads=3, vocab_size=512),
}


def trunc_normal_(tensor, std):
    """Truncated normal N(0, std^2) cut at +-std, as BEiT's pre-training model calls it."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-std, b=std)


def drop_path(x, drop_prob, training):
    """Stochastic depth per sample (timm's drop_path)."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep) * mask


class PatchEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D]


def relative_position_index(grid):
    """[T, T] index into the bias table (T = grid^2 + 1): relative (dy, dx) for patch pairs,
    and three extra entries for cls->patch, patch->cls and cls->cls."""
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # [2, N]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [N, N, 2]
    rel = rel + (grid - 1)
    num_distances = (2 * grid - 1) ** 2 + 3
    index = torch.zeros(grid * grid + 1, grid * grid + 1, dtype=torch.long)
    index[1:, 1:] = rel[:, :, 0] * (2 * grid - 1) + rel[:, :, 1]
    index[0, 0:] = num_distances - 3
    index[0:, 0] = num_distances - 2
    index[0, 0] = num_distances - 1
    return index


class RelativePositionBias(nn.Module):
    """The shared relative position bias: a table gathered into [heads, T, T]."""

    def __init__(self, grid, num_heads):
        super().__init__()
        self.tokens = grid * grid + 1
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * grid - 1) ** 2 + 3, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(grid))

    def forward(self):
        t = self.tokens
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(t, t, -1).permute(2, 0, 1).contiguous()


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rel_pos_bias):
        b, n, c = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False),
                              self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        qkv = qkv.reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + rel_pos_bias.unsqueeze(0)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg, drop_path_prob):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = Fp32LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads)
        self.drop_path = drop_path_prob
        self.norm2 = Fp32LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.gamma_1 = nn.Parameter(cfg.init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(cfg.init_values * torch.ones(dim))

    def forward(self, x, rel_pos_bias):
        x = x + drop_path(self.gamma_1 * self.attn(self.norm1(x), rel_pos_bias),
                          self.drop_path, self.training)
        x = x + drop_path(self.gamma_2 * self.mlp(self.norm2(x)), self.drop_path, self.training)
        return x


class BeitForMaskedImageModeling(nn.Module):
    """forward(images [B, 3, H, W], bool_masked_pos [B, N]) -> logits [masked, vocab]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.rel_pos_bias = RelativePositionBias(cfg.grid, cfg.num_heads)
        rates = [r.item() for r in torch.linspace(0, cfg.drop_path_rate, cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, rates[i]) for i in range(cfg.depth))
        self.norm = Fp32LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.embed_dim, cfg.vocab_size)
        self._init_weights()

    def _init_weights(self):
        std = self.cfg.init_std
        trunc_normal_(self.cls_token, std)
        trunc_normal_(self.mask_token, std)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                trunc_normal_(m.weight, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():  # fix_init_weight
            for layer_id, block in enumerate(self.blocks, start=1):
                block.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))

    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}

    def forward_features(self, x, bool_masked_pos):
        x = self.patch_embed(x)
        b, n, _ = x.shape
        mask_token = self.mask_token.expand(b, n, -1)
        w = bool_masked_pos.unsqueeze(-1).type_as(mask_token)
        x = x * (1 - w) + mask_token * w
        x = torch.cat((self.cls_token.expand(b, -1, -1).to(x.dtype), x), dim=1)
        rel_pos_bias = self.rel_pos_bias()
        for block in self.blocks:
            x = block(x, rel_pos_bias)
        return self.norm(x)

    def forward(self, x, bool_masked_pos):
        x = self.forward_features(x, bool_masked_pos)[:, 1:]
        return self.lm_head(x[bool_masked_pos])


def build_beit(preset):
    return BeitForMaskedImageModeling(PRESETS[preset])


def parameter_groups(model, weight_decay):
    """BEiT's optimizer parameter groups: no decay for 1-D tensors, biases and the model's
    no_weight_decay() names; decay for the rest."""
    skip = model.no_weight_decay()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim == 1 or name.endswith(".bias") or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    # First-seen order of the official grouping (cls_token comes first: no_decay).
    return [{"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay}]


def main():
    parser = make_parser(__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        default="beit_base_patch16_224_8k_vocab")
    parser.add_argument("--check_keys", default="",
                        help="key file ('name [shape]' per line) to compare the state_dict with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_beit(args.preset)
    log(f"{args.preset}: {count_parameters(model)} trainable parameters")
    if args.check_keys:
        run_key_check(model, args.check_keys)


if __name__ == "__main__":
    main()
