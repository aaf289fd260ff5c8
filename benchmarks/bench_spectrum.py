"""Scale spectrum speed: the classifier's slowest feature, against skimage's Hessian route.

The scale spectrum (core.heads.morph_features.scale_spectrum) filters each image at 13 scales
up to sigma 64 px. Its Gaussian filters now take a banded-matrix product where the kernel is
wider than a sixth of the axis; the peer is the same spectrum with skimage's
``hessian_matrix`` (what it used before), measured in the same run on the same images. Images
are brought to the classifier's working size (256 px long side) first, as the classifier does.

With ``--model`` (a classifier model file with the spectrum among its features) the whole
classification of each image is timed both ways too.

Usage: python benchmarks/bench_spectrum.py [--images DIR] [--limit N] [--model FILE]
(default: 30 synthetic 256 px images). Prints a table and writes benchmarks/out/bench_spectrum.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from skimage.feature import hessian_matrix

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.heads import morph_features
from napari_nanowire.core.heads.classify import classifier_input
from napari_nanowire.core.io import file_frames
from napari_nanowire.core.predict import Predictor
from record import write_record

OUT = Path(__file__).parent / "out" / "bench_spectrum.json"
WORKING = 256


def skimage_hessian(image: np.ndarray, sigma: float) -> list[np.ndarray]:
    """The peer: skimage's Hessian, as the spectrum computed it before."""
    return hessian_matrix(image, sigma, order="rc", use_gaussian_derivatives=False)


def timed(job, images: list[np.ndarray], route) -> tuple[np.ndarray, float]:
    """``job`` of every image with Hessian ``route``: the stacked results, seconds per image."""
    product = morph_features.hessian
    morph_features.hessian = route
    try:
        start = time.perf_counter()
        out = np.stack([job(image) for image in images])
        return out, (time.perf_counter() - start) / len(images)
    finally:
        morph_features.hessian = product


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="a folder of images (e.g. the EMPS sample)")
    parser.add_argument("--limit", type=int, default=30, help="images used")
    parser.add_argument("--model", type=Path, help="also time this classifier end to end")
    args = parser.parse_args()
    if args.images:
        raw = [np.asarray(f.frame) for f in list(file_frames([args.images]))[: args.limit]]
    else:
        raw = [item.image for item in generate_dataset(-(-args.limit // 4), size=WORKING)]
    images = [classifier_input(image, None, None, 1.0, WORKING) for image in raw[: args.limit]]
    spectrum = morph_features.scale_spectrum
    timed(spectrum, images[:2], morph_features.hessian)  # warm-up
    ours, ours_s = timed(spectrum, images, morph_features.hessian)
    peer, peer_s = timed(spectrum, images, skimage_hessian)
    rows = [("scale spectrum", ours, ours_s, peer, peer_s)]
    if args.model:
        predictor = Predictor.load(args.model, "cpu")

        def classify(image: np.ndarray) -> np.ndarray:
            return predictor.predict_frame(image, None, ["classifier"]).classes.features[0]

        timed(classify, raw[:2], morph_features.hessian)  # warm-up
        rows.append(
            ("classification", *timed(classify, raw, morph_features.hessian),
             *timed(classify, raw, skimage_hessian))
        )  # fmt: skip
    shapes = sorted({image.shape for image in images})
    print(f"{len(images)} images, working shapes {shapes[0]}..{shapes[-1]}")
    print("| step | ours s/image | skimage route s/image | speed-up | max rel. difference |")
    print("|---|---|---|---|---|")
    result = {}
    for name, ours, ours_s, peer, peer_s in rows:
        difference = float(np.max(np.abs(ours - peer) / (np.abs(peer) + 1e-6)))
        print(
            f"| {name} | {ours_s:.3f} | {peer_s:.3f} | {peer_s / ours_s:.1f}x | {difference:.1e} |"
        )
        result[name] = {
            "ours_s_per_image": ours_s,
            "skimage_s_per_image": peer_s,
            "speed_up": peer_s / ours_s,
            "max_relative_difference": difference,
        }
    write_record(OUT, images=str(args.images or "synthetic"), count=len(images), rows=result)


if __name__ == "__main__":
    main()
