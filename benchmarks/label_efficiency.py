"""Label efficiency: how few labels the classifier and the segmenter need, on synthetic data.

Classification: accuracy on held-out images against labelled images per class (1, 2, 4, 8, 16)
for a linear classifier on frozen features of a SimCLR encoder, a Barlow Twins encoder, a
randomly initialised encoder (same architecture and input), and a classical baseline
(hand-made intensity, texture, orientation and shape features, same logistic regression). Each
point is the median and interquartile range over random label draws (the same draws for every
method), as in Lu et al. 2022, Fig. 5.

Segmentation: foreground IoU and Dice on held-out images against labelled images (1, 2, 5,
10), trained from dense masks or from simulated strokes (skeleton pieces on wires and short
lines on background, as a user paints them), on the SimCLR and the random encoder.

Both SSL encoders are pretrained here on the unlabelled pool (labels unused). Defaults are
sized for a 2-core CPU (under 30 minutes); ``--full`` is the GPU-size run.

Usage: .venv/bin/python benchmarks/label_efficiency.py [--full] [--quick]
Writes benchmarks/out/label_efficiency.json, benchmarks/out/label_efficiency_*.csv and the
plot benchmarks/label_efficiency.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from skimage.draw import line
from skimage.morphology import skeletonize

from napari_nanowire.core.data.synthetic import CLASSES, generate_dataset
from napari_nanowire.core.heads.classify import feature_zoom
from napari_nanowire.core.heads.features import pooled_features, prepare_image
from napari_nanowire.core.heads.linear import fit_linear_head
from napari_nanowire.core.heads.morph_features import image_descriptors
from napari_nanowire.core.heads.segment import SegmenterConfig, iou_dice, train_segmenter
from napari_nanowire.core.model.encoders import build_encoder, load_encoder
from napari_nanowire.core.model.modelfile import load_model, save_model
from napari_nanowire.core.predict.predictor import Predictor
from napari_nanowire.core.ssl.pretrain import PretrainConfig, pretrain

HERE = Path(__file__).parent
OUT = HERE / "out"
PLOT = HERE / "label_efficiency.png"
METHODS = ("simclr", "barlow", "random", "classical")
COLORS = {"simclr": "#0072b2", "barlow": "#009e73", "random": "#d55e00", "classical": "#7f7f7f"}


@dataclass
class Settings:
    """Everything that sizes a run (recorded in the JSON)."""

    size: int = 128
    pixel_size_nm: float = 2.0
    difficulty: float = 0.5
    pool_per_class: int = 40
    test_per_class: int = 25
    encoder: str = "tiny"
    image_size: int = 64
    ssl_epochs: int = 200
    ssl_batch: int = 64
    labels_per_class: tuple[int, ...] = (1, 2, 4, 8, 16)
    splits: int = 20
    seg_images: tuple[int, ...] = (1, 2, 5, 10)
    seg_methods: tuple[str, ...] = ("simclr", "random")
    seg_repeats: int = 3
    seg_steps: int = 120
    seg_tile: int = 64
    seg_test: int = 12
    device: str = "cpu"
    seed: int = 0


FULL = Settings(
    size=256,
    pool_per_class=100,
    test_per_class=50,
    encoder="resnet18",
    image_size=128,
    ssl_epochs=200,
    ssl_batch=128,
    splits=50,
    seg_methods=("simclr", "barlow", "random"),
    seg_repeats=5,
    seg_steps=1000,
    seg_tile=128,
    seg_test=40,
    device="auto",
)
QUICK = Settings(
    size=96,
    pool_per_class=16,
    test_per_class=8,
    ssl_epochs=2,
    splits=3,
    seg_images=(1, 2),
    seg_repeats=1,
    seg_steps=10,
    seg_test=4,
    labels_per_class=(1, 2, 4),
)


# --- encoders ------------------------------------------------------------------------------


def pretrain_encoders(pool, s: Settings, workdir: Path) -> tuple[dict[str, Path], dict]:
    """SimCLR and Barlow Twins encoders pretrained on the pool, plus a random one alike."""
    paths, seconds = {}, {}
    images = [item.image for item in pool]
    for method in ("simclr", "barlow"):
        config = PretrainConfig(
            method=method,
            encoder=s.encoder,
            epochs=s.ssl_epochs,
            batch_size=s.ssl_batch,
            image_size=s.image_size,
            device=s.device,
            seed=s.seed,
        )
        paths[method] = workdir / f"{method}.nwmodel"
        start = time.perf_counter()
        for event in pretrain(
            images, config, paths[method], pixel_sizes_nm=[s.pixel_size_nm] * len(images)
        ):
            last = event
        seconds[method] = round(time.perf_counter() - start, 1)
        print(f"pretrained {method}: {last.step} steps in {seconds[method]:.0f} s, {last.metrics}")
    random_file = load_model(paths["simclr"])  # same meta (input size, zoom), fresh weights
    torch.manual_seed(s.seed)
    random_file.set_part("encoder", build_encoder(s.encoder))
    paths["random"] = save_model(random_file, workdir / "random.nwmodel")
    return paths, seconds


def encoder_features(path: Path, items, s: Settings) -> np.ndarray:
    """Pooled features as the classifier computes them (same zoom and tiles)."""
    encoder, model = load_encoder(path)
    tile = model.meta["image_size"]
    zoom = feature_zoom(model.meta, tile)
    prepared = [
        prepare_image(i.image, i.pixel_size_nm, model.meta["pixel_size_nm"], zoom) for i in items
    ]
    return pooled_features(encoder, prepared, tile, max_tiles=16, device=s.device)


# --- classical baseline ----------------------------------------------------------------------


# --- classification --------------------------------------------------------------------------


def classification(features: dict[str, tuple[np.ndarray, np.ndarray]], pool_y, test_y, s):
    """Accuracy of every method for every label count and split (one row each)."""
    rows = []
    for n in s.labels_per_class:
        for split in range(s.splits):
            rng = np.random.default_rng([s.seed, n, split])
            picked = np.concatenate(
                [
                    rng.choice(np.flatnonzero(pool_y == c), n, replace=False)
                    for c in range(len(CLASSES))
                ]
            )
            for method, (pool_f, test_f) in features.items():
                head, _ = fit_linear_head(pool_f[picked], pool_y[picked], len(CLASSES))
                with torch.no_grad():
                    pred = head(torch.as_tensor(test_f)).argmax(1).numpy()
                accuracy = float((pred == test_y).mean())
                rows.append(dict(method=method, labels_per_class=n, split=split, accuracy=accuracy))
    return pd.DataFrame(rows)


# --- segmentation ----------------------------------------------------------------------------


def strokes(
    mask: np.ndarray, rng: np.random.Generator, n_wire: int = 4, n_bg: int = 4
) -> np.ndarray:
    """Simulated user strokes: pieces of wire skeletons (2) and short background lines (1)."""
    out = np.zeros(mask.shape, np.uint8)
    skeleton = np.argwhere(skeletonize(mask.astype(bool)))
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    for cy, cx in skeleton[rng.choice(len(skeleton), min(n_wire, len(skeleton)), replace=False)]:
        near = (yy - cy) ** 2 + (xx - cx) ** 2 <= 12**2
        piece = np.zeros(mask.shape, bool)
        piece[tuple(skeleton.T)] = True
        out[ndimage.binary_dilation(piece & near) & mask.astype(bool)] = 2
    far = ndimage.distance_transform_edt(mask == 0) > 3
    candidates = np.argwhere(far)
    for cy, cx in candidates[
        rng.choice(len(candidates), min(n_bg, len(candidates)), replace=False)
    ]:
        angle = rng.uniform(0, np.pi)
        ey = int(np.clip(cy + 20 * np.sin(angle), 0, mask.shape[0] - 1))
        ex = int(np.clip(cx + 20 * np.cos(angle), 0, mask.shape[1] - 1))
        rr, cc = line(int(cy), int(cx), ey, ex)
        stroke = np.zeros(mask.shape, bool)
        stroke[rr, cc] = True
        out[ndimage.binary_dilation(stroke) & far & (out == 0)] = 1
    return out


def segmentation(paths: dict[str, Path], pool, test, s: Settings, workdir: Path) -> pd.DataFrame:
    """IoU/Dice on the test images for every encoder, label count, mask kind and repeat."""
    rows = []
    for repeat in range(s.seg_repeats):
        for n in s.seg_images:
            rng = np.random.default_rng([s.seed, 99, n, repeat])
            chosen = [pool[i] for i in rng.choice(len(pool), n, replace=False)]
            for kind in ("dense", "sparse"):
                masks = [i.mask if kind == "dense" else strokes(i.mask, rng) for i in chosen]
                for method in s.seg_methods:
                    config = SegmenterConfig(
                        steps=s.seg_steps,
                        tile=s.seg_tile,
                        dense_masks=kind == "dense",
                        device=s.device,
                        seed=repeat,
                    )
                    out = workdir / f"seg_{method}.nwmodel"
                    start = time.perf_counter()
                    list(
                        train_segmenter(
                            paths[method],
                            [i.image for i in chosen],
                            masks,
                            out,
                            [s.pixel_size_nm] * n,
                            config=config,
                        )
                    )
                    seconds = time.perf_counter() - start
                    predictor = Predictor.load(out, s.device)
                    preds = [predictor.segment(i.image, i.pixel_size_nm).mask for i in test]
                    iou, dice = iou_dice(
                        np.concatenate([p.ravel() for p in preds]),
                        np.concatenate([i.mask.ravel() for i in test]),
                        2,
                    )
                    labelled = (
                        float(np.mean([(m > 0).mean() for m in masks])) if kind == "sparse" else 1.0
                    )
                    rows.append(
                        dict(
                            method=method,
                            masks=kind,
                            images=n,
                            repeat=repeat,
                            iou=iou,
                            dice=dice,
                            labelled_fraction=labelled,
                            train_s=seconds,
                        )
                    )
                    print(
                        f"segmentation {method} {kind} n={n} repeat {repeat}: "
                        f"IoU {iou:.3f} ({seconds:.0f} s)"
                    )
    return pd.DataFrame(rows)


# --- summary and plot ------------------------------------------------------------------------


def summarise(table: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Median and quartiles of ``value`` per group."""
    grouped = table.groupby(keys)[value]
    return pd.DataFrame(
        {"median": grouped.median(), "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75)}
    ).reset_index()


def plot(cls_summary: pd.DataFrame, seg_summary: pd.DataFrame, s: Settings, path: Path) -> None:
    """Two panels: accuracy vs labels per class, IoU vs labelled images (median, IQR band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in METHODS:
        part = cls_summary[cls_summary["method"] == method]
        x = part["labels_per_class"]
        ax1.plot(x, part["median"], "o-", color=COLORS[method], label=method)
        ax1.fill_between(x, part["q25"], part["q75"], color=COLORS[method], alpha=0.2)
    ax1.axhline(1 / len(CLASSES), color="k", ls=":", lw=1, label="chance")
    ax1.set(
        xscale="log",
        xlabel="labelled images per class",
        ylabel="test accuracy",
        title=f"Classification ({len(CLASSES)} classes, linear head)",
        ylim=(0, 1),
    )
    ax1.minorticks_off()
    ax1.set_xticks(s.labels_per_class, [str(n) for n in s.labels_per_class])
    ax1.legend(fontsize=8)
    for (method, kind), part in seg_summary.groupby(["method", "masks"]):
        x = part["images"]
        style = "o-" if kind == "dense" else "s--"
        ax2.plot(x, part["median"], style, color=COLORS[method], label=f"{method}, {kind}")
        ax2.fill_between(x, part["q25"], part["q75"], color=COLORS[method], alpha=0.15)
    ax2.set(
        xscale="log",
        xlabel="labelled images",
        ylabel="test IoU (wires)",
        title="Segmentation (U-Net, dense masks or strokes)",
        ylim=(0, 1),
    )
    ax2.minorticks_off()
    ax2.set_xticks(s.seg_images, [str(n) for n in s.seg_images])
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"Synthetic TEM, {s.size} px at {s.pixel_size_nm} nm/px, difficulty {s.difficulty}; "
        f"{s.encoder} encoder, {s.ssl_epochs} SSL epochs",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(summary: pd.DataFrame, index: str, columns: list[str]) -> str:
    """A markdown table of "median [q25, q75]" cells, rows ``index``, columns ``columns``."""
    cells = summary.assign(
        cell=[f"{m:.2f} [{a:.2f}, {b:.2f}]" for m, a, b in summary[["median", "q25", "q75"]].values]
    )
    table = cells.pivot(index=index, columns=columns, values="cell")
    heads = [" ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in table.columns]
    lines = [f"| {index} | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
    lines += [
        f"| {i} | " + " | ".join(row) + " |"
        for i, row in zip(table.index, table.values, strict=True)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="the GPU-size run")
    p.add_argument("--quick", action="store_true", help="a smoke run of a minute or two")
    p.add_argument("--device", help="override the device (default cpu, auto with --full)")
    p.add_argument("--ssl-epochs", type=int, help="override the pretraining epochs")
    p.add_argument("--pool-per-class", type=int, help="override the unlabelled pool size")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: two threads on a 2-core machine shared with other "
        "work ran 10-15x slower here, one thread on an idle one only ~1.5x)",
    )
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show up in logs as they come
    torch.set_num_threads(args.threads)
    s = FULL if args.full else QUICK if args.quick else Settings()
    overrides = {k: getattr(args, k) for k in ("device", "ssl_epochs", "pool_per_class")}
    s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
    OUT.mkdir(exist_ok=True)
    times = {}
    start = time.perf_counter()
    load_before = os.getloadavg()
    pool = generate_dataset(s.pool_per_class, s.size, s.pixel_size_nm, s.difficulty, seed=s.seed)
    test = generate_dataset(
        s.test_per_class, s.size, s.pixel_size_nm, s.difficulty, seed=s.seed + 1000
    )
    pool_y = np.array([CLASSES.index(i.label) for i in pool])
    test_y = np.array([CLASSES.index(i.label) for i in test])
    times["data"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        paths, ssl_seconds = pretrain_encoders(pool, s, workdir)
        times.update({f"pretrain {m}": t for m, t in ssl_seconds.items()})
        mark = time.perf_counter()
        features = {
            m: (encoder_features(paths[m], pool, s), encoder_features(paths[m], test, s))
            for m in ("simclr", "barlow", "random")
        }
        features["classical"] = tuple(
            np.stack([image_descriptors(i.image) for i in items]) for items in (pool, test)
        )
        cls = classification(features, pool_y, test_y, s)
        times["classification"] = time.perf_counter() - mark
        cls.to_csv(OUT / "label_efficiency_classification.csv", index=False)
        cls_summary = summarise(cls, ["method", "labels_per_class"], "accuracy")
        print(f"\nClassification accuracy, median [IQR] over {s.splits} label draws")
        print(markdown(cls_summary, "labels_per_class", ["method"]))
        mark = time.perf_counter()
        seg_test = [test[i] for i in np.linspace(0, len(test) - 1, s.seg_test).round().astype(int)]
        seg = segmentation(paths, pool, seg_test, s, workdir)
        times["segmentation"] = time.perf_counter() - mark
    seg.to_csv(OUT / "label_efficiency_segmentation.csv", index=False)
    seg_summary = summarise(seg, ["method", "masks", "images"], "iou")
    dice_summary = summarise(seg, ["method", "masks", "images"], "dice")
    plot(cls_summary, seg_summary, s, PLOT)
    elapsed = time.perf_counter() - start
    print(f"\nSegmentation IoU, median [IQR] over {s.seg_repeats} repeats")
    print(markdown(seg_summary, "images", ["method", "masks"]))
    print(f"\nSegmentation Dice, median [IQR] over {s.seg_repeats} repeats")
    print(markdown(dice_summary, "images", ["method", "masks"]))
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, {args.threads} thread(s)",
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "settings": asdict(s),
        "seconds": times,
        "total_seconds": elapsed,
        "classification": cls_summary.to_dict("records"),
        "segmentation_iou": seg_summary.to_dict("records"),
        "segmentation_dice": dice_summary.to_dict("records"),
    }
    (OUT / "label_efficiency.json").write_text(json.dumps(result, indent=1))
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
    print(
        f"\ntotal {elapsed / 60:.1f} min ({phases}); "
        f"load average before/after {load_before[0]:.1f}/{os.getloadavg()[0]:.1f}; wrote {PLOT}"
    )


if __name__ == "__main__":
    main()
