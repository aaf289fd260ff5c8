"""Segmenter training from strokes: held-out IoU before/after the new loop, with/without unlabelled.

Real data: the EMPS sample (path on the command line; foreground = instance mask > 0, gray from
the RGB PNG, downsampled to --side px on the long side). Synthetic: generate_dataset. For each
data set, 1 or 3 images get simulated strokes (simulate_strokes), a fixed set of other images
is the test set (dense truth) and more images are the unlabelled pool. Recipes:

- before: the old loop (no augmentation beyond flips/rotations, no validation, fixed steps),
  under the same time cap as the others;
- after: the new defaults without unlabelled images;
- after+unl: the new defaults with the unlabelled pool (FixMatch consistency, opt-in since
  2026-12-06).

Each with a random-init encoder and, given --encoder, an SSL-pretrained one; Otsu (polarity
chosen on the strokes) as the classical baseline. Prints a table, writes JSON and side-by-side
PNGs (image | truth | prediction) to --out.

    python benchmarks/segment_training.py /work/shared/data/emps_train_sample --encoder E.nwmodel
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from skimage.filters import threshold_otsu
from skimage.io import imread, imsave
from skimage.transform import resize

from napari_nanowire.core.data.synthetic import generate_dataset, simulate_strokes
from napari_nanowire.core.heads.segment import SegmenterConfig, iou_dice, train_segmenter
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile, load_model
from napari_nanowire.core.predict import Predictor

BEFORE = SegmenterConfig(
    steps=400, augment=False, validation=False, semi_supervised=False, patience=0
)
AFTER = SegmenterConfig()


def load_emps(root: Path, side: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, gray float image, 0/1 mask) per EMPS image, downsampled to ``side`` px."""
    out = []
    for path in sorted((root / "images").glob("*.png")):
        rgb = imread(path)
        gray = rgb[..., :3].mean(-1) if rgb.ndim == 3 else rgb.astype(float)
        mask = imread(root / "segmaps" / path.name) > 0
        shape = tuple(round(n * side / max(gray.shape)) for n in gray.shape)
        gray = resize(gray, shape, anti_aliasing=True, preserve_range=True).astype(np.float32)
        mask = resize(mask, shape, order=0, anti_aliasing=False).astype(np.uint8)
        out.append((path.stem, gray, mask))
    return out


def synthetic(n: int, side: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Synthetic wire images with their 0/1 truth masks (mixed classes, moderate difficulty)."""
    items = generate_dataset(n // 4 + 1, size=side, pixel_size_nm=1.0, difficulty=0.5, seed=7)
    rng = np.random.default_rng(0)
    return [(i.name, i.image, i.mask.astype(np.uint8)) for i in rng.permutation(items)[:n]]


def strokes(mask: np.ndarray, seed: int, side: int) -> np.ndarray:
    """Strokes a user might paint on one image (scaled to the image size)."""
    return simulate_strokes(mask, seed, stroke_px=max(side // 8, 12), brush_px=3)


def otsu_masks(tests, train) -> tuple[list[np.ndarray], str]:
    """Otsu per test image, bright or dark foreground chosen by agreement with the strokes."""
    votes = 0.0
    for image, stroke in train:
        fg = image > threshold_otsu(image)
        votes += (fg[stroke == 2].mean() - fg[stroke == 1].mean()) if (stroke == 2).any() else 0
    bright = votes >= 0
    return [(im > threshold_otsu(im)) == bright for _, im, _ in tests], (
        "bright" if bright else "dark"
    )


def random_encoder() -> ModelFile:
    """A random-init tiny encoder file (no pixel size: images are used as given)."""
    torch.manual_seed(0)
    model = ModelFile(ModelMeta(encoder="tiny", image_size=96))
    model.set_part("encoder", build_encoder("tiny"))
    return model


def score(preds, tests) -> dict:
    """Pooled foreground IoU over the test pixels, and the mean and min of per-image IoU."""
    pooled = iou_dice(
        np.concatenate([p.ravel() for p in preds]),
        np.concatenate([t.ravel() for _, _, t in tests]),
        2,
    )[0]
    per = [iou_dice(p, t, 2)[0] for p, (_, _, t) in zip(preds, tests, strict=True)]
    return {"iou": pooled, "iou_mean": float(np.nanmean(per)), "iou_min": float(np.nanmin(per))}


def picture(path: Path, tests, preds, rows: int = 4) -> None:
    """Side-by-side PNG: image | truth | prediction, one test image per row."""
    lines = []
    for (_, image, truth), pred in list(zip(tests, preds, strict=True))[:rows]:
        lo, hi = np.percentile(image, (1, 99))
        gray = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
        row = [gray, truth > 0, pred > 0]
        bar = np.ones((image.shape[0], 4))
        cells = [np.pad(c.astype(float), ((0, 0), (0, 256 - c.shape[1]))) for c in row]
        lines.append(np.concatenate([cells[0], bar, cells[1], bar, cells[2]], 1))
        lines.append(np.ones((4, lines[-1].shape[1])))
    imsave(path, (np.concatenate(lines) * 255).astype(np.uint8), check_contrast=False)


def run_one(name, encoder, config, labelled, unlabelled, tests, out: Path) -> dict:
    """Train one recipe, predict the test images, score and draw them."""
    model_path = out / f"{name}.nwmodel"
    start = time.perf_counter()
    events = list(
        train_segmenter(
            encoder,
            [im for im, _ in labelled],
            [s for _, s in labelled],
            model_path,
            config=config,
            unlabelled=unlabelled,
        )
    )
    seconds = time.perf_counter() - start
    predictor = Predictor.load(model_path, device="cpu")
    start = time.perf_counter()
    preds = [predictor.segment(im).mask for _, im, _ in tests]
    predict_s = (time.perf_counter() - start) / len(tests)
    segmenter = load_model(model_path).meta.segmenter
    meta = {**segmenter.extra, "metrics": segmenter.metrics}
    picture(out / f"{name}.png", tests, preds)
    return {
        "recipe": name,
        **score(preds, tests),
        "train_s": seconds,
        "predict_s_per_image": predict_s,
        "steps": meta["steps_run"],
        "best_step": meta["best_step"],
        "val_iou": meta["metrics"].get("val_iou"),
        "train_iou": meta["metrics"].get("train_iou"),
        "stop": meta["stop_reason"],
        "validation": meta["validation"],
        "last_message": events[-1].message,
    }


def benchmark(data, dataset: str, args, encoders: dict) -> list[dict]:
    """All recipes on one data set."""
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(data))
    tests = [data[i] for i in order[: args.n_test]]
    rest = [data[i] for i in order[args.n_test :]]
    painted = [(im, strokes(m, k, args.side)) for k, (_, im, m) in enumerate(rest[:12])]
    usable = [k for k, (_, s) in enumerate(painted) if {1, 2} <= set(np.unique(s))][:3]
    pool = [data[i][1] for i in order[args.n_test :]]
    unlabelled = [im for k, im in enumerate(pool) if k not in usable][: args.n_unl]
    rows = []
    for n_lab in args.labelled:
        labelled = [painted[k] for k in usable[:n_lab]]
        otsu, polarity = otsu_masks(tests, labelled)
        rows.append(
            {
                "dataset": dataset,
                "n_labelled": n_lab,
                "recipe": f"otsu ({polarity})",
                **score([m.astype(np.uint8) for m in otsu], tests),
            }
        )
        picture(args.out / f"{dataset}_{n_lab}lab_otsu.png", tests, otsu)
        for enc_name in [e for e in args.encoders if e in encoders]:
            encoder = encoders[enc_name]
            budget = {"max_seconds": args.max_seconds}
            if args.steps:  # equal step budgets: on a loaded machine a time cap means few steps
                budget.update(steps=args.steps, validate_every=args.validate_every)
            recipes = {
                "before": replace(BEFORE, **budget),
                "after": replace(AFTER, **budget),
                "after+unl": replace(AFTER, semi_supervised=True, **budget),
            }
            recipes = {k: v for k, v in recipes.items() if k in args.recipes}
            for recipe, config in recipes.items():
                name = f"{dataset}_{n_lab}lab_{enc_name}_{recipe}"
                row = run_one(
                    name,
                    encoder,
                    replace(config, device="cpu"),
                    labelled,
                    unlabelled if recipe.endswith("unl") else [],
                    tests,
                    args.out,
                )
                rows.append({"dataset": dataset, "n_labelled": n_lab, "encoder": enc_name, **row})
                print_row(rows[-1])
                (args.out / "segment_training.json").write_text(
                    json.dumps(args.rows + rows, indent=1)
                )
    return rows


def print_row(r: dict) -> None:
    """One table line."""
    val = r.get("val_iou")
    print(
        f"| {r['dataset']} | {r['n_labelled']} | {r.get('encoder', '-')} | {r['recipe']} | "
        f"{r['iou']:.3f} | {r['iou_mean']:.3f} | {r['iou_min']:.3f} | "
        f"{'-' if val is None else f'{val:.3f}'} | {r.get('steps', '-')} | "
        f"{r.get('train_s', 0):.0f} | {r.get('stop', '')} |",
        flush=True,
    )


def main() -> None:
    """Parse arguments, run the real and synthetic benchmarks, write JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("emps", type=Path, help="folder of the EMPS sample (images/, segmaps/)")
    p.add_argument("--encoder", type=Path, help="SSL-pretrained encoder model file")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/segment_training"))
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--n-unl", type=int, default=40)
    p.add_argument("--labelled", type=int, nargs="+", default=[1, 3])
    p.add_argument("--max-seconds", type=float, default=90.0, help="time cap (0: none)")
    p.add_argument("--steps", type=int, help="the same step budget for every recipe")
    p.add_argument("--validate-every", type=int, default=20)
    p.add_argument("--recipes", nargs="+", default=["before", "after", "after+unl"])
    p.add_argument("--encoders", nargs="+", default=["random", "ssl"])
    p.add_argument("--datasets", nargs="+", default=["real", "synthetic"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.max_seconds = args.max_seconds or None
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.rows = []
    print(
        "| data | labelled | encoder | recipe | IoU pooled | IoU mean | IoU min | val IoU | "
        "steps | train s | stop |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        encoders = {"random": random_encoder()}
        if args.encoder and dataset == "real":
            encoders["ssl"] = load_model(args.encoder)
        data = (
            load_emps(args.emps, args.side)
            if dataset == "real"
            else synthetic(args.n_test + 3 + args.n_unl, args.side)
        )
        rows = benchmark(data, dataset, args, encoders)
        for r in rows:
            if "encoder" not in r:
                print_row(r)
        args.rows += rows
    (args.out / "segment_training.json").write_text(json.dumps(args.rows, indent=1))


if __name__ == "__main__":
    main()
