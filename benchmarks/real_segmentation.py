"""Segmentation of real micrographs at the working scale (issue 11): IoU, time, pictures.

Real set: the EMPS sample (150 EM images, 512 px tall, uncalibrated, instance masks;
foreground = mask > 0). Fixed split: every 5th file (sorted by name) is held out for testing
(30 images); labelled training images are drawn from the other 120 with a seeded shuffle.
Synthetic set: the nanowire generator at two difficulties (512 px, 1 nm/px), held-out images
from another seed.

Rows: 1, 3 and 10 labelled images; dense masks vs simulated strokes (core.data.synthetic's
simulate_strokes: pieces of the truth's skeleton and short background lines); random-init vs
SSL encoder (``--ssl MODEL``: an encoder model file, e.g. pretrained on the 120 unlabelled
training-pool images); each model scored with and without post-processing, and with and
without the grey-level refinement (on by default) and filling every hole. Baselines: Otsu
thresholding with the better polarity chosen per test image (an oracle choice: generous), and
with the smaller side taken as foreground (no truth used).
A working-scale sweep (``--scales``) trains every row at each of several working sizes.
``--seeds`` repeats every row with other training seeds (which image is held out for
validation, the random initialisation, the crops): with 3 stroked images one run's median IoU
moves by up to 0.2 from seed to seed (benchmarks/RESULTS.md). ``--draws`` repeats them with
other labelled images (draw k: pool images k n .. k n + n - 1).
Columns: foreground IoU median [IQR] over the held-out images, training seconds, and
prediction seconds per 1024 x 1024 frame at the default working scale (timed separately per
encoder on an untrained model: the time does not depend on the weights).

Usage:
  python benchmarks/real_segmentation.py --emps /work/shared/data/emps_train_sample \
      [--ssl ENCODER.nwmodel] [--steps 150] [--quick] [--out benchmarks/out/real_segmentation]
Writes OUT/results.json, OUT/results.csv, side-by-side PNGs OUT/pictures/*.png
(image | truth | prediction | Otsu) and the plot benchmarks/real_segmentation.png (OUT/plot.png
with another ``--out``, so scratch runs leave the recorded plot alone).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from skimage.filters import threshold_otsu
from skimage.io import imread

from napari_nanowire.core.data.synthetic import generate_dataset, simulate_strokes
from napari_nanowire.core.heads.segment import SegmenterConfig, train_segmenter
from napari_nanowire.core.model.encoders import build_encoder
from napari_nanowire.core.model.metadata import ModelMeta
from napari_nanowire.core.model.modelfile import ModelFile, load_model
from napari_nanowire.core.predict import Predictor

HERE = Path(__file__).parent
DEFAULT_OUT = HERE / "out" / "real_segmentation"


def gray(path: Path) -> np.ndarray:
    """An RGB(A) PNG with grey content as a 2D float32 image."""
    image = imread(path)
    return (image[..., :3].mean(-1) if image.ndim == 3 else image).astype(np.float32)


def dark_particles(image: np.ndarray, truth: np.ndarray) -> bool:
    """Whether the particles (truth) are darker than the background (TEM bright field), the
    opposite of bright particles on a dark background (mostly SEM)."""
    return bool(image[truth].mean() < image[~truth].mean())


def load_emps(root: Path, quick: bool, contrast: str = "all") -> tuple[list[dict], list[dict]]:
    """(pool, test) items of the EMPS sample: name, image, truth (bool), pixel size None.

    ``contrast`` "dark" or "bright" keeps the images whose particles are darker (brighter) than
    their background: a collection of one contrast, as one instrument and sample give a user,
    where the whole sample mixes figures of many papers.
    """
    files = sorted((root / "images").glob("*.png"))
    items = [
        {
            "name": f.stem,
            "image": gray(f),
            "truth": imread(root / "segmaps" / f.name) > 0,
            "px": None,
        }
        for f in files
    ]
    if contrast != "all":
        items = [
            it for it in items if dark_particles(it["image"], it["truth"]) == (contrast == "dark")
        ]
    test = [it for i, it in enumerate(items) if i % 5 == 0]
    pool = [it for i, it in enumerate(items) if i % 5]
    order = np.random.default_rng(0).permutation(len(pool))
    return [pool[i] for i in order], test[:10] if quick else test


def load_synthetic(difficulty: float, quick: bool) -> tuple[list[dict], list[dict]]:
    """(pool, test) synthetic nanowire items at 512 px, 1 nm/px."""

    def items(n: int, seed: int) -> list[dict]:
        data = generate_dataset(n, size=512, pixel_size_nm=1.0, difficulty=difficulty, seed=seed)
        return [{"name": d.name, "image": d.image, "truth": d.mask > 0, "px": 1.0} for d in data]

    pool = items(3, 0)  # 12 images, 3 per morphology class
    order = np.random.default_rng(0).permutation(len(pool))
    return [pool[i] for i in order], items(1 if quick else 2, 100)


def training_mask(truth: np.ndarray, labels: str, seed: int, brush_px: int = 3) -> np.ndarray:
    """Training convention mask (0 unlabelled, 1 background, 2 object): dense or strokes
    (painted with a brush ``brush_px`` wide)."""
    if labels == "dense":
        return truth.astype(np.uint8) + 1
    return simulate_strokes(truth, seed, brush_px=brush_px)


def encoder_model(kind: str, ssl: Path | None, name: str, seed: int = 0) -> ModelFile:
    """An encoder model file: random-init ``name`` (weights from ``seed``) or the SSL file."""
    if kind == "ssl":
        return load_model(ssl)
    torch.manual_seed(seed)
    model = ModelFile(ModelMeta(encoder=name, image_size=96))
    model.set_part("encoder", build_encoder(name))
    return model


def fg_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """IoU of foreground (pred > 0) against truth; 1 if both empty."""
    p, t = pred > 0, truth > 0
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else 1.0


def otsu(image: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """Otsu threshold with the polarity that fits the truth better (an oracle choice)."""
    above = image > threshold_otsu(image)
    best = max((above, ~above), key=lambda m: fg_iou(m, truth))
    return fg_iou(best, truth), best


def otsu_minority(image: np.ndarray, truth: np.ndarray) -> float:
    """Otsu threshold taking the smaller side as foreground (no truth used)."""
    above = image > threshold_otsu(image)
    return fg_iou(above if above.mean() < 0.5 else ~above, truth)


def summary(values: list[float]) -> dict:
    """Median and quartiles."""
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3)}


def run_row(
    pool: list[dict],
    test: list[dict],
    n: int,
    labels: str,
    encoder: str,
    args: argparse.Namespace,
    target_side: int | None = None,
    n_unlabelled: int = 0,
    seed: int = 0,
    draw: int = 0,
) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    """Train one segmenter on ``n`` labelled pool images (draw k: images k n .. k n + n - 1)
    with ``n_unlabelled`` more for the semi-supervised loss and training seed ``seed``; score
    it on the test set with and without post-processing."""
    train = pool[draw * n : draw * n + n]
    rest = pool[: draw * n] + pool[draw * n + n :]
    unlabelled = [it["image"] for it in rest[:n_unlabelled]]
    masks = [training_mask(it["truth"], labels, i, args.brush) for i, it in enumerate(train)]
    jitter = tuple(float(v) for v in args.scale_jitter.split(",")) if args.scale_jitter else None
    changes = {"steps": args.steps, "batch_size": args.batch_size, "crop": args.crop}
    changes = {k: v for k, v in {**changes, "scale_jitter": jitter}.items() if v is not None}
    if args.max_seconds is not None:
        changes["max_seconds"] = args.max_seconds or None  # 0: no cap, the steps decide
    config = SegmenterConfig(
        tile=args.tile, device="cpu", seed=seed, semi_supervised=bool(unlabelled), **changes
    )
    if target_side:
        long_side = float(np.median([max(it["image"].shape) for it in train]))
        config.working_downsample = max(1.0, long_side / target_side)
    base = encoder_model(encoder, args.ssl, args.encoder, seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seg.nwmodel"
        start = time.perf_counter()
        images = [it["image"] for it in train]
        sizes = [it["px"] for it in train]
        list(train_segmenter(base, images, masks, out, sizes, config=config, unlabelled=unlabelled))
        train_s = time.perf_counter() - start
        predictor = Predictor.load(out, device="cpu")
    settings = predictor.postprocess
    refine = settings.refine_intensity

    def masks(post: bool = True, fill: bool = settings.fill_holes, refined: bool = refine):
        """Test masks with the model's settings but those given."""
        predictor.configure(postprocess=post, fill_holes=fill, refine_intensity=refined)
        return [predictor.segment(it["image"], it["px"]).mask for it in test]

    raw, clean, other = masks(post=False), masks(), masks(refined=not refine)
    unfilled = masks(fill=False)
    refined, unrefined = (clean, other) if refine else (other, clean)
    row = {
        "n_labelled": n,
        "seed": seed,
        "draw": draw,
        "labels": labels,
        "encoder": encoder,
        "unlabelled": len(unlabelled),
        "working_downsample": predictor.working.downsample,
        "fill_holes": settings.fill_holes,
        "refine_intensity": refine,
        "tile": predictor.meta.segmenter.tile,
        "train_s": round(train_s, 1),
        "iou_raw": summary([fg_iou(m, it["truth"]) for m, it in zip(raw, test, strict=True)]),
        "iou_post": summary([fg_iou(m, it["truth"]) for m, it in zip(clean, test, strict=True)]),
        "iou_post_each": [fg_iou(m, it["truth"]) for m, it in zip(clean, test, strict=True)],
        "iou_post_refined": summary(
            [fg_iou(m, it["truth"]) for m, it in zip(refined, test, strict=True)]
        ),
        "iou_post_unrefined": summary(
            [fg_iou(m, it["truth"]) for m, it in zip(unrefined, test, strict=True)]
        ),
        "iou_post_unfilled": summary(
            [fg_iou(m, it["truth"]) for m, it in zip(unfilled, test, strict=True)]
        ),
        "pieces_raw": float(np.median([count_specks(m) for m in raw])),
        "pieces_post": float(np.median([count_specks(m) for m in clean])),
        "one_px_specks_post": int(sum(count_specks(m, max_size=1) for m in clean)),
    }
    return row, raw, clean


def count_specks(mask: np.ndarray, max_size: int | None = None) -> int:
    """Connected foreground pieces (of at most ``max_size`` px if given)."""
    from scipy import ndimage

    pieces, n = ndimage.label(mask > 0)
    if max_size is None:
        return int(n)
    return int((np.bincount(pieces.ravel())[1:] <= max_size).sum())


def time_1024(encoder: str, full_resolution: bool = False, repeats: int = 3) -> float:
    """Seconds to segment a 1024 x 1024 frame (median of ``repeats``): at the default working
    scale of a model trained on 1024 px frames, or (``full_resolution``) as before working
    scales, at full resolution with 128 px tiles."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1024, 1024)).astype(np.float32)
    mask = np.ones((1024, 1024), np.uint8)
    mask[:, 512:] = 2
    config = SegmenterConfig(steps=1, batch_size=1, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seg.nwmodel"
        base = encoder_model("random", None, encoder)
        list(train_segmenter(base, [image], [mask], out, config=config))
        predictor = Predictor.load(out, device="cpu")
        tile = None
        if full_resolution:
            predictor.configure(working_downsample=1.0)
            tile = 128
        predictor.segment(image, tile=tile)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.segment(image, tile=tile)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def side_by_side(item: dict, pred: np.ndarray, otsu_mask: np.ndarray, path: Path) -> None:
    """PNG: image | truth | prediction | Otsu, each scaled to 0-255."""
    image = item["image"]
    lo, hi = np.percentile(image, [0.5, 99.5])
    panel = np.clip((image - lo) / max(hi - lo, 1e-6) * 255, 0, 255)
    parts = [panel, item["truth"] * 255.0, (pred > 0) * 255.0, otsu_mask * 255.0]
    gap = np.full((image.shape[0], 6), 128.0)
    row = np.concatenate([p for part in parts for p in (part, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(row.astype(np.uint8)).save(path)


def fmt(s: dict) -> str:
    return f"{s['median']:.2f} [{s['q1']:.2f}-{s['q3']:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emps", type=Path, required=True, help="emps_train_sample folder")
    parser.add_argument("--ssl", type=Path, help="SSL encoder model file for the ssl rows")
    parser.add_argument("--encoder", default="tiny", help="random-init encoder architecture")
    parser.add_argument("--steps", type=int, help="most steps (default: SegmenterConfig's)")
    parser.add_argument("--batch-size", type=int, help="default: SegmenterConfig's")
    parser.add_argument(
        "--max-seconds", type=float, help="time cap, 0 for none (default: SegmenterConfig's)"
    )
    parser.add_argument(
        "--draws",
        default="0",
        help="which labelled images: draw k takes pool images k n .. k n + n - 1",
    )
    parser.add_argument("--scale-jitter", help="LO,HI training zoom range (default: config's)")
    parser.add_argument(
        "--brush", type=int, default=3, help="simulated strokes' brush width in px (napari: 10)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="10 test images, fewer rows")
    parser.add_argument(
        "--sets",
        default="emps,synth0.3,synth0.8",
        help="emps (all), emps-dark / emps-bright (one contrast, see load_emps), synth<difficulty>",
    )
    parser.add_argument("--ns", default="1,3,10")
    parser.add_argument(
        "--seeds", default="0", help="training seeds per row (held-out image, init, crops)"
    )
    parser.add_argument(
        "--scales", default="", help="working long sides every row is trained at, e.g. 256,384"
    )
    parser.add_argument("--time-encoders", default="tiny,resnet18")
    parser.add_argument("--time-full-res", action="store_true", help="also time full resolution")
    parser.add_argument("--tile", type=int, help="prediction tile (default: from working scale)")
    parser.add_argument("--crop", type=int, help="training crop (default: config's)")
    parser.add_argument("--labels", default="strokes,dense")
    parser.add_argument(
        "--unlabelled", default="0", help="unlabelled pool images per row, e.g. 0,40"
    )
    parser.add_argument("--n-test", type=int, default=30, help="held-out images used")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="the plot goes to benchmarks/ only by default"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    info = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {args.threads} threads, load average at start "
        f"{os.getloadavg()[0]:.1f}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "predict_1024_s": {},
        "rows": [],
    }
    started = time.perf_counter()

    def save() -> None:
        info["seconds"] = round(time.perf_counter() - started)
        (args.out / "results.json").write_text(json.dumps(info, indent=1))
        flat = pd.json_normalize(info["rows"])
        flat.to_csv(args.out / "results.csv", index=False)
        if "unet" in set(flat.get("method", [])):
            plot(
                flat,
                HERE / "real_segmentation.png"
                if args.out == DEFAULT_OUT
                else args.out / "plot.png",
            )

    for enc in [e for e in args.time_encoders.split(",") if e]:
        info["predict_1024_s"][enc] = time_1024(enc)
        print(
            f"predict 1024 px at the working scale, {enc}: {info['predict_1024_s'][enc]:.2f} s",
            flush=True,
        )
    if args.time_full_res:
        info["predict_1024_s"]["tiny_full_resolution_tile128"] = time_1024("tiny", True)
        print(f"full resolution: {info['predict_1024_s']['tiny_full_resolution_tile128']:.2f} s")
    save()
    ns = [int(n) for n in args.ns.split(",")]
    for name in [s for s in args.sets.split(",") if s]:
        pool, test = (
            load_emps(args.emps, args.quick, name.partition("-")[2] or "all")
            if name.startswith("emps")
            else load_synthetic(float(name[5:]), args.quick)
        )
        test = test[: args.n_test]
        otsu_scores = [otsu(it["image"], it["truth"]) for it in test]
        base = {"set": name, "n_test": len(test)}
        info["rows"].append(
            {**base, "method": "otsu", "iou_post": summary([s for s, _ in otsu_scores])}
        )
        minority = summary([otsu_minority(it["image"], it["truth"]) for it in test])
        info["rows"].append({**base, "method": "otsu_minority", "iou_post": minority})
        print(
            f"{name}: Otsu IoU {fmt(info['rows'][-2]['iou_post'])} (oracle polarity), "
            f"{fmt(minority)} (smaller side)",
            flush=True,
        )
        encoders = ["random", "ssl"] if name.startswith("emps") and args.ssl else ["random"]
        sides = [int(s) for s in args.scales.split(",") if s] or [None]
        seeds = [int(s) for s in args.seeds.split(",")]
        for n in ns:
            for labels in [lab for lab in args.labels.split(",") if lab]:
                for encoder, n_unl, side, seed, draw in [
                    (e, int(u), side, seed, int(d))
                    for e in encoders
                    for u in args.unlabelled.split(",")
                    for side in sides
                    for d in args.draws.split(",")
                    for seed in seeds
                ]:
                    row, raw, clean = run_row(
                        pool, test, n, labels, encoder, args, side, n_unl, seed, draw
                    )
                    info["rows"].append({**base, "method": "unet", "working_side": side, **row})
                    save()
                    print(
                        f"{name} n={n} {labels} {encoder} +{n_unl} unlabelled, working side "
                        f"{side or 'default'}, seed {seed}, draw {draw}: IoU raw "
                        f"{fmt(row['iou_raw'])} post {fmt(row['iou_post'])} train "
                        f"{row['train_s']} s (fill holes {row['fill_holes']}: without "
                        f"{fmt(row['iou_post_unfilled'])}; refine {row['refine_intensity']}: "
                        f"refined {fmt(row['iou_post_refined'])} unrefined "
                        f"{fmt(row['iou_post_unrefined'])}) pieces {row['pieces_raw']}->"
                        f"{row['pieces_post']}",
                        flush=True,
                    )
                    if seed != seeds[0]:
                        continue
                    tag = f"{name}_n{n}_{labels}_{encoder}_u{n_unl}" + (f"_s{side}" if side else "")
                    tag += f"_d{draw}" if draw else ""
                    for it, m, (_, om) in list(zip(test, clean, otsu_scores, strict=True))[:6]:
                        side_by_side(it, m, om, args.out / "pictures" / tag / f"{it['name']}.png")
    save()
    print(f"wrote {args.out / 'results.json'}")


def plot(table: pd.DataFrame, path: Path) -> None:
    """IoU (post-processed) against labelled images, one panel per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(table["set"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        part = table[(table["set"] == name) & (table["method"] == "unet")]
        keys = ["labels", "encoder", "working_side"]
        for (labels, encoder, side), group in part.groupby(keys, dropna=False):
            group = group.sort_values("n_labelled")
            ax.errorbar(
                group["n_labelled"],
                group["iou_post.median"],
                yerr=[
                    group["iou_post.median"] - group["iou_post.q1"],
                    group["iou_post.q3"] - group["iou_post.median"],
                ],
                marker="o",
                capsize=3,
                label=f"U-Net {encoder}, {labels}" + ("" if pd.isna(side) else f", {side:.0f} px"),
            )
        for method, style in (("otsu", "--"), ("otsu_minority", ":")):
            otsu_row = table[(table["set"] == name) & (table["method"] == method)]
            if len(otsu_row):
                level = otsu_row["iou_post.median"].iloc[0]
                ax.axhline(level, color="grey", ls=style, label=method.replace("_", ", "))
        ax.set(xscale="log", xlabel="labelled images", ylabel="foreground IoU", title=name)
        ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
