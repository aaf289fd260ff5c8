"""Labelling in rounds: retrain, then classify the whole collection again, as the Train and
Predict widgets (and ``train-classifier`` then ``suggest`` in one Python session) do.

Each round labels 4 more images, trains a classifier on them and classifies every image of the
collection through ``core.predict.classify_frames`` (the Predict widget's path). Ours keeps
each image's features between runs (``core.heads.feature_cache``); the peer, measured in the
same run on the same images, forgets them before every training and prediction (what every
round cost before). The probabilities of both must be the same.

Usage: python benchmarks/bench_rounds.py [--images DIR] [--limit N] [--rounds R]
(default: 60 synthetic 256 px images). Prints a table and writes benchmarks/out/bench_rounds.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.heads.classify import ClassifierConfig, train_classifier
from napari_nanowire.core.heads.feature_cache import FEATURES
from napari_nanowire.core.io import file_frames
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile, save_model
from napari_nanowire.core.predict import Predictor, classify_frames
from napari_nanowire.core.progress import result_of
from record import write_record

OUT = Path(__file__).parent / "out" / "bench_rounds.json"
CLASSES = ("a", "b", "c", "d")


def classify_all(model: Path, images: list[np.ndarray]) -> np.ndarray:
    """Class probabilities of every image, through the Predict widget's path."""
    items = ((i, image, None) for i, image in enumerate(images))
    prediction = result_of(classify_frames(Predictor.load(model, "cpu"), items, len(images)))
    return prediction.probabilities


def run_rounds(
    images: list[np.ndarray], encoder: Path, rounds: int, keep: bool, workdir: Path
) -> tuple[list[dict], list[np.ndarray]]:
    """Seconds to train and to classify the collection in each round, and the probabilities."""
    FEATURES.clear()
    rows, probabilities = [], []
    for r in range(1, rounds + 1):
        labelled = list(range(4 * r))  # 4 more images a round, one of each class
        labels = [CLASSES[i % 4] for i in labelled]
        out = workdir / f"round{r}_{keep}.nwmodel"
        if not keep:
            FEATURES.clear()
        start = time.perf_counter()
        config = ClassifierConfig(device="cpu")
        list(train_classifier(encoder, [images[i] for i in labelled], labels, out, None, config))
        train_s = time.perf_counter() - start
        if not keep:
            FEATURES.clear()
        start = time.perf_counter()
        probabilities.append(classify_all(out, images))
        predict_s = time.perf_counter() - start
        rows.append(dict(round=r, labelled=len(labelled), train_s=train_s, predict_s=predict_s))
    return rows, probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="a folder of images (e.g. the EMPS sample)")
    parser.add_argument("--limit", type=int, default=60, help="images in the collection")
    parser.add_argument("--rounds", type=int, default=3, help="labelling rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.images:
        images = [np.asarray(f.frame) for f in list(file_frames([args.images]))[: args.limit]]
    else:
        images = [item.image for item in generate_dataset(-(-args.limit // 4), size=256)]
        images = images[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        torch.manual_seed(0)
        base = ModelFile(ModelMeta(encoder="tiny", image_size=64))
        base.set_part("encoder", build_encoder("tiny"))
        encoder = save_model(base, workdir / "encoder.nwmodel")
        ours, ours_p = run_rounds(images, encoder, args.rounds, True, workdir)
        peer, peer_p = run_rounds(images, encoder, args.rounds, False, workdir)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(ours_p, peer_p, strict=True))
    print(f"{len(images)} images, {args.rounds} rounds of 4 more labels, tiny encoder, 1 thread")
    print("| round | labelled | train s, kept / recomputed | classify all s, kept / recomputed "
          "| speed-up of classify all |")  # fmt: skip
    print("|---|---|---|---|---|")
    for a, b in zip(ours, peer, strict=True):
        speed_up = b["predict_s"] / a["predict_s"]
        print(
            f"| {a['round']} | {a['labelled']} | {a['train_s']:.1f} / {b['train_s']:.1f} | "
            f"{a['predict_s']:.2f} / {b['predict_s']:.2f} | {speed_up:.0f}x |"
        )
    print(f"largest difference of a probability, kept against recomputed: {difference:.1e}")
    write_record(
        OUT,
        images=str(args.images or "synthetic"),
        count=len(images),
        kept=ours,
        recomputed=peer,
        max_probability_difference=difference,
    )


if __name__ == "__main__":
    main()
