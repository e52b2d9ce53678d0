"""Writes a reproducible folder of JPEG photographs at ImageNet-like sizes for the data-pipeline
and end-to-end benchmarks (both peco and the baseline read it), in ImageFolder layout:
DIR/class_000/img_00000.jpg, ...

Each image is a random crop of one of the photographs scikit-image ships (astronaut, chelsea,
coffee, rocket, hubble_deep_field, retina, immunohistochemistry, and the greyscale camera and
coins as RGB), resized to 500x375 (landscape, 70%) or 375x500 (portrait), randomly mirrored, and
encoded as baseline JPEG at quality 90. The same --seed gives the same files.

Usage: /usr/bin/python3 bench/baseline/make_jpegs.py DIR|--out DIR [--count 256] [--classes 8]
         [--quality 90] [--seed 0]
"""

import argparse
import os
import sys
import warnings

import numpy as np
from PIL import Image

SOURCES = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
           "immunohistochemistry", "camera", "coins"]


def load_sources():
    import skimage.data
    images = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in SOURCES:
            a = getattr(skimage.data, name)()
            if a.ndim == 2:
                a = np.stack([a] * 3, axis=-1)
            images.append(Image.fromarray(np.ascontiguousarray(a[..., :3]), mode="RGB"))
    return images


def make_image(source, rng):
    landscape = rng.random() < 0.7
    out_w, out_h = (500, 375) if landscape else (375, 500)
    aspect = out_w / out_h
    sw, sh = source.size
    area = rng.uniform(0.4, 1.0) * sw * sh
    w = min(sw, int(round(np.sqrt(area * aspect))))
    h = min(sh, int(round(w / aspect)))
    w = min(w, int(round(h * aspect)))
    left = int(rng.integers(0, sw - w + 1))
    top = int(rng.integers(0, sh - h + 1))
    img = source.crop((left, top, left + w, top + h)).resize((out_w, out_h), Image.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", default="", help="output directory (or --out)")
    parser.add_argument("--out", default="", help="output directory")
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.dir = args.out or args.dir
    if not args.dir:
        parser.error("give the output directory as DIR or --out DIR")
    sources = load_sources()
    rng = np.random.default_rng(args.seed)
    total_bytes = 0
    for i in range(args.count):
        k = i % args.classes
        folder = os.path.join(args.dir, f"class_{k:03d}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"img_{i:05d}.jpg")
        make_image(sources[int(rng.integers(len(sources)))], rng).save(path, "JPEG",
                                                                      quality=args.quality)
        total_bytes += os.path.getsize(path)
    print(f"wrote {args.count} JPEGs in {args.classes} classes to {args.dir} "
          f"({total_bytes / args.count / 1024:.1f} KiB each on average)", file=sys.stderr)


if __name__ == "__main__":
    main()
