"""End-to-end part of ``validate_measure.py``: measurements on the project's predicted masks.

Run through ``validate_measure.py --predicted`` and/or ``--emps PATH`` (see its docstring).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import ndimage
from skimage.io import imread
from skimage.segmentation import find_boundaries

from napari_nanowire.core.data.synthetic import generate_dataset
from napari_nanowire.core.heads.segment import SegmenterConfig, iou_dice, train_segmenter
from napari_nanowire.core.io import read_image
from napari_nanowire.core.measure import MeasureOptions
from napari_nanowire.core.measure.domain_shape import hull_stats
from napari_nanowire.core.measure.selection import segmenter_min_area_nm2, weighted_median
from napari_nanowire.core.measure.tables import measure_masks
from napari_nanowire.core.predict import Predictor
from napari_nanowire.core.ssl.pretrain import PretrainConfig, pretrain
from real_segmentation import dark_particles

DIFFICULTIES = (0.2, 0.5)
SIZE_COLUMNS = {
    "equivalent_diameter": "equivalent_diameter_nm",
    "area": "area_nm2",
    "feret_max": "feret_max_nm",
}


def drain(job) -> None:
    """Run a training job to its end, printing a line now and then."""
    for event in job:
        if event.done or event.step % 50 == 0:
            loss = f" loss {event.loss:.3f}" if event.loss is not None else ""
            print(f"  {event.job} {event.step}/{event.total_steps}{loss} {event.message}")


def train_model(images, masks, train_idx, pixel_sizes, work: Path, args) -> Path:
    """Pretrain a tiny encoder on every image, then a segmenter on the labelled ones (at most
    ``args.steps`` steps and ``args.max_seconds``, the segmenter's default cap when None)."""
    seed = args.seed
    encoder = work / "encoder.nwmodel"
    ssl = PretrainConfig(
        method="simclr", encoder="tiny", epochs=4, batch_size=32, image_size=96,
        steps_per_epoch=10, seed=seed,
    )  # fmt: skip
    drain(pretrain(images, ssl, encoder, pixel_sizes_nm=pixel_sizes))
    segmenter = work / "segmenter.nwmodel"
    config = SegmenterConfig(steps=args.steps, dense_masks=True, seed=seed)
    if args.max_seconds is not None:
        config.max_seconds = args.max_seconds
    drain(
        train_segmenter(
            encoder,
            [images[i] for i in train_idx],
            [masks[i] for i in train_idx],
            segmenter,
            pixel_sizes_nm=[pixel_sizes[i] for i in train_idx],
            class_names=["wire"],
            config=config,
        )
    )
    return segmenter


def outlines(ax, image: np.ndarray, labels: np.ndarray | None, title: str) -> None:
    """Show ``image`` with the outlines of ``labels`` in red."""
    ax.imshow(image, cmap="gray")
    if labels is not None:
        edge = np.ma.masked_where(~find_boundaries(labels, mode="inner"), np.ones(labels.shape))
        ax.imshow(edge, cmap="autumn", interpolation="nearest", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def side_by_side(path: Path, image, truth_labels, pred_labels, title: str) -> None:
    """image | truth | prediction, with domain outlines."""
    fig = Figure(figsize=(12, 4.4))
    axes = fig.subplots(1, 3)
    outlines(axes[0], image, None, title)
    outlines(axes[1], image, truth_labels, "truth")
    outlines(axes[2], image, pred_labels, "prediction (kept domains)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def kept_labels(mask: np.ndarray, domains: pd.DataFrame) -> np.ndarray:
    """Label image of the domains a summary counts (8-connected, not below the minimum)."""
    labels, _ = ndimage.label(mask > 0, structure=np.ones((3, 3)))
    keep = domains.loc[~domains.below_min_area, "domain_id"].to_numpy()
    return np.where(np.isin(labels, keep), labels, 0)


def synthetic_rows(args, pictures: Path) -> pd.DataFrame:
    """Per held-out image: measurements of predicted masks against the truth."""
    rows = []
    for difficulty in DIFFICULTIES:
        items = generate_dataset(args.n_per_class, 256, 1.0, difficulty, args.seed)
        images = [item.image for item in items]
        px = [item.pixel_size_nm for item in items]
        train_idx = [args.n_per_class * k for k in range(4)]  # one image per class
        start = time.perf_counter()
        work = pictures / "models" / f"synthetic_d{difficulty:g}"
        work.mkdir(parents=True, exist_ok=True)
        model = args.model or train_model(
            images, [i.mask for i in items], train_idx, px, work, args
        )
        train_s = time.perf_counter() - start
        predictor = Predictor.load(model, "cpu")
        options = MeasureOptions(model_min_area_nm2=segmenter_min_area_nm2(predictor.meta))
        for i, item in enumerate(items):
            if i in train_idx:
                continue
            pred = predictor.segment(item.image, item.pixel_size_nm).mask
            row = {"difficulty": difficulty, "image": item.name, "label": item.label}
            row["iou"] = iou_dice(pred, item.mask, 2)[0]
            row["train_s"] = train_s
            for name, mask, opts in (
                ("pred", pred, options),
                ("raw", pred, MeasureOptions(min_area_nm2=0, include_flagged=True)),
                ("true", item.mask, options),
            ):
                d, s = measure_masks([(item.name, mask, item.pixel_size_nm)], opts)
                s = s.iloc[0]
                row[f"{name}_width"] = s.width_median_nm
                row[f"{name}_width_weighted"] = s.width_weighted_median_nm
                row[f"{name}_length"] = s.length_median_nm
                row[f"{name}_domains"] = s.domain_count
                row[f"{name}_excluded_small"] = s.excluded_small
                if name == "pred":
                    domains = d
            four = MeasureOptions(connectivity=1, model_min_area_nm2=options.model_min_area_nm2)
            s4 = measure_masks([(item.name, pred, item.pixel_size_nm)], four)[1].iloc[0]
            row["percolation_agrees"] = (s4.percolates_x, s4.percolates_y) == (
                item.percolates_x,
                item.percolates_y,
            )
            row["gen_width"] = float(item.wires.width_nm.median())
            rows.append(row)
            if i % args.n_per_class == 1:  # one picture per class and difficulty
                truth, _ = ndimage.label(item.mask, structure=np.ones((3, 3)))
                side_by_side(
                    pictures / f"synthetic_d{difficulty:g}_{item.name}.png",
                    item.image,
                    truth,
                    kept_labels(pred, domains),
                    f"{item.name} d={difficulty:g} IoU {row['iou']:.2f}",
                )
    table = pd.DataFrame(rows)
    for name in ("pred", "raw", "true"):
        table[f"{name}_width_err"] = table[f"{name}_width"] / table.gen_width - 1
        table[f"{name}_weighted_err"] = table[f"{name}_width_weighted"] / table.gen_width - 1
    table["pred_length_err"] = table.pred_length / table.true_length - 1
    return table


def instance_sizes(instances: np.ndarray) -> pd.DataFrame:
    """Area, equivalent diameter and max Feret diameter (px) of every true instance."""
    rows = []
    for k, sl in enumerate(ndimage.find_objects(instances), start=1):
        if sl is None:
            continue
        crop = instances[sl] == k
        area = int(crop.sum())
        rows.append(
            {
                "area_nm2": area,
                "equivalent_diameter_nm": np.sqrt(4 * area / np.pi),
                "feret_max_nm": hull_stats(crop).feret_max,
            }
        )
    return pd.DataFrame(rows)


def split_sizes(mask: np.ndarray, name: str, options: MeasureOptions) -> pd.DataFrame:
    """Sizes of a mask's domains with touching particles split (``measure --split-touching``),
    without those under the minimum area."""
    split = replace(options, split_touching=True)
    domains, _ = measure_masks([(name, (mask > 0).astype(np.uint8), 1.0)], split)
    return domains[~domains.below_min_area]


def emps_rows(args, pictures: Path) -> pd.DataFrame:
    """Per held-out EMPS image: per-image median particle sizes, predicted vs true (px)."""
    names = sorted(p.stem for p in (args.emps / "images").glob("*.png"))
    images = [
        np.asarray(read_image(args.emps / "images" / f"{n}.png").data, np.float32) for n in names
    ]
    instances = [imread(args.emps / "segmaps" / f"{n}.png").astype(np.int64) for n in names]
    if args.contrast != "all":  # one contrast, as one instrument gives (real_segmentation.py)
        keep = [
            dark_particles(im, m > 0) == (args.contrast == "dark")
            for im, m in zip(images, instances, strict=True)
        ]
        names, images, instances = (
            [x for x, k in zip(seq, keep, strict=True) if k] for seq in (names, images, instances)
        )
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(names))
    train_idx, test_idx = order[:6], order[6 : 6 + args.held_out]
    start = time.perf_counter()
    work = pictures / "models" / "emps"
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or train_model(
        images,
        [(m > 0).astype(np.uint8) for m in instances],
        train_idx,
        [None] * len(images),
        work,
        args,
    )
    train_s = time.perf_counter() - start
    predictor = Predictor.load(model, "cpu")
    # Uncalibrated: 1 "nm" = 1 px, so the default minimum area is 16 px.
    options = MeasureOptions(model_min_area_nm2=segmenter_min_area_nm2(predictor.meta))
    rows = []
    for n, i in enumerate(test_idx):
        pred = predictor.segment(images[i]).mask
        truth = instance_sizes(instances[i])
        d_pred, s_pred = measure_masks([(names[i], pred, 1.0)], options)
        d_merged, _ = measure_masks([(names[i], (instances[i] > 0).astype(np.uint8), 1.0)], options)
        kept = d_pred[~d_pred.below_min_area]
        merged = d_merged[~d_merged.below_min_area]
        split = split_sizes(pred, names[i], options)
        split_truth = split_sizes(instances[i], names[i], options)
        row = {"image": names[i], "iou": iou_dice(pred, instances[i] > 0, 2)[0], "train_s": train_s}
        row |= {"true_particles": len(truth), "pred_domains": len(kept)}
        row["pred_excluded_small"] = int(s_pred.excluded_small.iloc[0])
        for short, column in SIZE_COLUMNS.items():
            true_median = truth[column].median() if len(truth) else np.nan
            row[f"{short}_true"] = true_median
            row[f"{short}_pred"] = kept[column].median()
            row[f"{short}_raw"] = d_pred[column].median()
            row[f"{short}_merged"] = merged[column].median()
            row[f"{short}_split"] = split[column].median() if len(split) else np.nan
            row[f"{short}_split_truth"] = (
                split_truth[column].median() if len(split_truth) else np.nan
            )
            for kind in ("pred", "raw", "merged", "split", "split_truth"):
                row[f"{short}_{kind}_err"] = row[f"{short}_{kind}"] / true_median - 1
        # Particle size by area (the summary's diameter_area_weighted_median_nm), both sides.
        by_area = {"true": truth, "pred": kept, "merged": merged, "split": split}
        for kind, table in by_area.items():
            row[f"diameter_by_area_{kind}"] = (
                weighted_median(table.equivalent_diameter_nm, table.area_nm2)
                if len(table)
                else np.nan
            )
        for kind in ("pred", "merged", "split"):
            row[f"diameter_by_area_{kind}_err"] = (
                row[f"diameter_by_area_{kind}"] / row["diameter_by_area_true"] - 1
            )
        rows.append(row)
        if n < 12:
            side_by_side(
                pictures / f"emps_{names[i]}.png",
                images[i],
                instances[i],
                kept_labels(pred, d_pred),
                f"{names[i]} IoU {row['iou']:.2f} "
                f"eq. diameter error {row['equivalent_diameter_pred_err']:+.0%}",
            )
    return pd.DataFrame(rows)


def med(values: pd.Series) -> dict:
    """Median signed and median absolute relative error, and the count."""
    v = values.dropna()
    return {"n": int(v.size), "median": float(v.median()), "median_abs": float(v.abs().median())}


def run_end_to_end(args, out: Path, pictures: Path) -> None:
    """Run the parts asked for, print a table per part and write JSON."""
    torch.set_num_threads(1)  # the 2 shared cores are oversubscribed; one thread each is faster
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "model": str(args.model) if args.model else "trained here",
        "steps": args.steps,
        "max_seconds": args.max_seconds,
    }
    if args.predicted:
        table = synthetic_rows(args, pictures)
        table.to_csv(out.with_name("validate_measure_synthetic.csv"), index=False)
        part = {}
        for difficulty, rows in table.groupby("difficulty"):
            part[f"difficulty {difficulty:g}"] = {
                "images": len(rows),
                "iou_median": float(rows.iou.median()),
                "width_err": med(rows.pred_width_err),
                "width_err_no_defaults": med(rows.raw_width_err),
                "width_err_true_mask": med(rows.true_width_err),
                "weighted_width_err": med(rows.pred_weighted_err),
                "weighted_width_err_no_defaults": med(rows.raw_weighted_err),
                "weighted_width_err_true_mask": med(rows.true_weighted_err),
                "length_err_vs_true_mask": med(rows.pred_length_err),
                "percolation_agreement": float(rows.percolation_agrees.mean()),
                "domains_pred_median": float(rows.pred_domains.median()),
                "domains_true_median": float(rows.true_domains.median()),
                "excluded_small_total": int(rows.pred_excluded_small.sum()),
                "train_s": float(rows.train_s.iloc[0]),
            }
        result["synthetic"] = part
        print(pd.DataFrame(part).T.to_string())
    if args.emps:
        table = emps_rows(args, pictures)
        table.to_csv(out.with_name("validate_measure_emps.csv"), index=False)
        part = {"images": len(table), "iou_median": float(table.iou.median())}
        for short in SIZE_COLUMNS:
            for kind in ("pred", "raw", "merged", "split", "split_truth"):
                part[f"{short}_{kind}"] = med(table[f"{short}_{kind}_err"])
        for kind in ("pred", "merged", "split"):
            part[f"diameter_by_area_{kind}"] = med(table[f"diameter_by_area_{kind}_err"])
        part["train_s"] = float(table.train_s.iloc[0])
        result["emps"] = part
        print(json.dumps(part, indent=1))
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(out.read_text()) if out.exists() else {}  # keep the other part's
    out.write_text(json.dumps(earlier | result, indent=2, default=float))
    print(f"wrote {out} and pictures in {pictures}")
