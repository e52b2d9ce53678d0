"""Model FLOPs of a forward pass, counted by the PyTorch profiler: matrix products and
convolutions only (aten::conv2d, mm, addmm, bmm, baddbmm), as peco counts BeitMimForwardFlops.
Element-wise work is left out on purpose: MFU compares against a dense-matmul peak.

A training step's FLOPs are built from forward counts: a trained network costs 3x its forward
(forward, input gradients, weight gradients), a frozen network that gradients flow through 2x
(forward, input gradients), a frozen network under no_grad 1x.
"""

import torch

COUNTED = {"aten::conv2d", "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def forward_flops(fn):
    """FLOPs of the matrix products and convolutions `fn()` runs (under no_grad)."""
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                 with_flops=True) as prof:
        fn()
    return sum(e.flops for e in prof.events() if e.name in COUNTED and e.flops)
