"""Validate domain measurements against the synthetic generator's ground truth, and time them.

For every synthetic image (four classes, several difficulties) the true mask is measured and its
percolation compared with the generator's; every wire's own region in the instance image is
measured and its width and length compared with the wire's true width and length. Also
reports the nematic order per class (skeleton-based, as measured, next to the orientations of
whole domains for comparison) and the time to measure a 1024 x 1024 mask with a few hundred
domains.

End to end (issue 13), through the project's own predicted masks:

- ``--predicted``: synthetic images at difficulties 0.2 and 0.5; a tiny encoder is pretrained
  (SimCLR) on all of them, a U-Net segmenter trained from one densely labelled image per
  class, and every other image is segmented and measured with the default settings (minimum
  area "auto", flagged domains left out). Per image: median width against the generator's
  wire widths, median length against the same measurement on the true mask, percolation
  against the generator's.
- ``--emps PATH``: real EM particle images with instance masks (uncalibrated: sizes are in
  pixels). A segmenter is trained on a few images (foreground = mask > 0) and the others are
  segmented. Touching particles merge in a semantic mask, so per-image medians of equivalent
  diameter, area and maximum Feret diameter are compared (predicted domains vs true
  instances), not particle pairs; the true semantic mask measured the same way shows how much
  of the error is merging alone.
- ``--model PATH`` reuses a trained segmenter instead of training one (for a later segmenter).

Side-by-side pictures (image | truth | prediction, domain outlines) go to
``benchmarks/out/validate_measure/``.

Run:  .venv/bin/python benchmarks/validate_measure.py            (about 5 minutes on 2 cores)
      .venv/bin/python benchmarks/validate_measure.py --quick    (a smoke run)
      .venv/bin/python benchmarks/validate_measure.py --predicted --emps /path/emps_train_sample
Writes benchmarks/out/validate_measure.json (validate_measure_e2e.json for the end to end).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from napari_nanowire.core.data.synthetic import CLASSES, generate_dataset
from napari_nanowire.core.measure import MeasureOptions
from napari_nanowire.core.measure.tables import measure_domains, measure_masks

OUT = Path(__file__).parent / "out" / "validate_measure.json"
OUT_E2E = OUT.with_name("validate_measure_e2e.json")
PICTURES = OUT.with_name("validate_measure")


def wire_errors(image) -> pd.DataFrame:
    """One row per true wire: its measured width and length against the truth.

    A wire's region is its pixels in the instance image; a wire crossed by a later one is cut
    into pieces there, so lengths and areas are summed over the pieces and the width is
    area / length over them. Truth: ``length_nm`` is the centreline inside the field; the wire's
    round caps add half a width beyond every end that lies inside the field, which gives
    ``tip_length_nm``, the length from tip to tip that the skeleton measures.
    """
    px = image.pixel_size_nm
    options = MeasureOptions(pixel_size_nm=px)
    field_nm = image.mask.shape[0] * px
    slices = ndimage.find_objects(image.instances)
    rows = []
    for wire in image.wires.itertuples():
        sl = slices[wire.wire_id - 1] if wire.wire_id <= len(slices) else None
        if sl is None:  # entirely hidden under later wires
            continue
        pieces = measure_domains(image.instances[sl] == wire.wire_id, options)
        ends = [(wire.x_start_nm, wire.y_start_nm), (wire.x_end_nm, wire.y_end_nm)]
        ends_inside = sum(0 <= x < field_nm and 0 <= y < field_nm for x, y in ends)
        length = pieces.length_nm.sum()
        rows.append(
            {
                "image": image.name,
                "label": image.label,
                "pieces": len(pieces),
                "true_width_nm": wire.width_nm,
                "true_length_nm": wire.length_nm,
                "tip_length_nm": wire.length_nm + ends_inside * wire.width_nm / 2,
                "width_nm": pieces.area_nm2.sum() / length,
                "width_median_nm": np.average(pieces.width_median_nm, weights=pieces.length_nm),
                "length_nm": length,
            }
        )
    return pd.DataFrame(rows)


def domain_order(domains: pd.DataFrame) -> float:
    """Length-weighted nematic order of whole domains' orientations (for comparison only)."""
    ok = domains.orientation_deg.notna()
    theta = np.deg2rad(domains.orientation_deg[ok])
    weights = domains.length_nm[ok]
    return float(abs(np.sum(weights * np.exp(2j * theta)) / weights.sum()))


def image_rows(image) -> dict:
    """Percolation agreement and order parameters for one synthetic image."""
    row = {"image": image.name, "label": image.label}
    for connectivity in (1, 2):
        options = MeasureOptions(connectivity=connectivity)
        domains, summary = measure_masks([(image.name, image.mask, image.pixel_size_nm)], options)
        summary = summary.iloc[0]
        row[f"agree_x_c{connectivity}"] = summary.percolates_x == image.percolates_x
        row[f"agree_y_c{connectivity}"] = summary.percolates_y == image.percolates_y
        if connectivity == 1:
            row["nematic_order"] = summary.nematic_order
            row["domain_order"] = domain_order(domains)
            row["percolates"] = image.percolates_x or image.percolates_y
    return row


def time_large_masks(seed: int, repeats: int = 3) -> list[dict]:
    """Seconds to measure 1024 x 1024 masks tiled from 64 dispersed 128 px masks (both tables).

    Difficulty 0 gives a few hundred separate wires; difficulty 1 denser, merged ones.
    """
    rows = []
    for difficulty in (0.0, 1.0):
        dataset = generate_dataset(64, 128, 1.0, difficulty, seed, classes=("dispersed",))
        tiles = [image.mask for image in dataset]
        mask = np.block([tiles[i : i + 8] for i in range(0, 64, 8)])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            domains, _ = measure_masks([("tiled", mask, 1.0)])
            times.append(time.perf_counter() - start)
        rows.append(
            {
                "shape": list(mask.shape),
                "area_fraction": float(mask.mean()),
                "domains": len(domains),
                "seconds_best": min(times),
            }
        )
    return rows


def quantiles(values: pd.Series) -> dict:
    """Median, IQR and 5-95 % range of a series of relative errors."""
    q = values.quantile([0.05, 0.25, 0.5, 0.75, 0.95]).to_numpy()
    return {"n": int(values.size), "p05": q[0], "q1": q[1], "median": q[2], "q3": q[3], "p95": q[4]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predicted", action="store_true", help="synthetic, predicted masks")
    parser.add_argument("--emps", type=Path, metavar="DIR", help="EMPS sample folder")
    parser.add_argument("--model", type=Path, help="reuse this segmenter model file")
    parser.add_argument("--steps", type=int, default=300, help="segmenter training steps")
    parser.add_argument(
        "--max-seconds", type=float, help="segmenter time cap (default: SegmenterConfig's)"
    )
    parser.add_argument("--out", type=Path, help="folder for JSON, CSVs and pictures")
    parser.add_argument("--held-out", type=int, default=40, help="EMPS images to segment")
    parser.add_argument(
        "--contrast",
        choices=("all", "dark", "bright"),
        default="all",
        help="EMPS images whose particles are darker (brighter) than their background only",
    )
    parser.add_argument("--n-per-class", type=int, default=25)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pixel-sizes", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--difficulties", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="3 images per class, one setting")
    args = parser.parse_args()
    if args.quick:
        args.n_per_class, args.pixel_sizes, args.difficulties = 3, [1.0], [0.5]
    if args.predicted or args.emps:
        from validate_measure_e2e import run_end_to_end

        out, pictures = (
            (args.out / OUT_E2E.name, args.out / PICTURES.name) if args.out else (OUT_E2E, PICTURES)
        )
        run_end_to_end(args, out, pictures)
        return

    wires, images = [], []
    for px in args.pixel_sizes:
        for difficulty in args.difficulties:
            dataset = generate_dataset(args.n_per_class, args.size, px, difficulty, args.seed)
            for image in dataset:
                extra = {"pixel_size_nm": px, "difficulty": difficulty}
                wires.append(wire_errors(image).assign(**extra))
                images.append({**image_rows(image), **extra})
    wires, images = pd.concat(wires, ignore_index=True), pd.DataFrame(images)
    wires["width_err"] = wires.width_nm / wires.true_width_nm - 1
    wires["width_median_err"] = wires.width_median_nm / wires.true_width_nm - 1
    wires["length_err"] = wires.length_nm / wires.true_length_nm - 1
    wires["tip_length_err"] = wires.length_nm / wires.tip_length_nm - 1
    whole = wires[wires.pieces == 1]

    errors = {}
    for name, table in (("all wires", wires), ("uncut wires", whole)):
        for px in args.pixel_sizes:
            mine = table[table.pixel_size_nm == px]
            errors[f"{name}, {px:g} nm/px"] = {
                column: quantiles(mine[column])
                for column in ("width_err", "width_median_err", "length_err", "tip_length_err")
            }
    agreement = {
        f"connectivity {c}": float((images[f"agree_x_c{c}"] & images[f"agree_y_c{c}"]).mean())
        for c in (1, 2)
    }
    order = images.groupby("label")[["nematic_order", "domain_order"]].median().loc[list(CLASSES)]
    timing = time_large_masks(args.seed)

    print(f"{len(images)} images, {len(wires)} wires ({len(whole)} uncut)")
    print(f"{'relative error: median [IQR]':<30}" + "".join(f"{k:>26}" for k in errors))
    for column in ("width_err", "width_median_err", "length_err", "tip_length_err"):
        cells = [
            f"{e[column]['median']:+.3f} [{e[column]['q1']:+.3f},{e[column]['q3']:+.3f}]"
            for e in errors.values()
        ]
        print(f"{column:<30}" + "".join(f"{c:>26}" for c in cells))
    print("percolation agreement (x and y):", {k: f"{v:.1%}" for k, v in agreement.items()})
    print("median nematic order per class:\n" + order.round(3).to_string())
    for t in timing:
        print(
            f"measure a {t['shape'][0]}x{t['shape'][1]} mask, {t['area_fraction']:.0%} covered, "
            f"{t['domains']} domains: {t['seconds_best']:.2f} s (best of 3)"
        )

    OUT.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.system()}, Python {platform.python_version()}",
        "settings": vars(args),
        "images": len(images),
        "wires": len(wires),
        "uncut_wires": len(whole),
        "relative_errors": errors,
        "percolation_agreement": agreement,
        "percolating_images": int(images.percolates.sum()),
        "median_nematic_order": order.to_dict(orient="index"),
        "timing_1024": timing,
    }
    OUT.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
