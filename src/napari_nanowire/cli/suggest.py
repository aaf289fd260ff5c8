"""``napari-nanowire suggest``: which images of a collection to label next."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from napari_nanowire.cli.common import (
    POSITIVE,
    check_out,
    int_range,
    read_labelled_paths,
    run_job,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``suggest`` sub-command."""
    p = sub.add_parser(
        "suggest",
        help="rank the unlabelled images a classifier would learn most from",
        description=(
            "Classify every image of IMAGES (files or folders) with a classifier model file "
            "and rank the unlabelled ones to label next, as the Predict widget does: the most "
            "typical image of each part of the collection (k-means clusters of the classifier's "
            "features) that no labelled image covers yet, the largest part first. With few "
            "labels these taught the classifier more than the least certain images did. Images "
            "in the --labels table (the one train-classifier read) count as labelled: they "
            "cover their part and are not suggested; labelled images outside IMAGES are read "
            "too. Prints the suggestions; --out also writes a row per image: prediction, "
            "confidence, 'label next' rank, your label, probabilities, entropy and margin."
        ),
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="classifier model file")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGES", help="image files or folders")
    p.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="table with columns image and label (or class) of the images labelled already",
    )
    p.add_argument(
        "--images-root",
        type=Path,
        metavar="DIR",
        help="folder the --labels paths are relative to (default: the table's folder)",
    )
    p.add_argument(
        "-n",
        "--count",
        type=int_range(1, 100_000),
        default=5,
        metavar="N",
        help="how many images to suggest (default 5)",
    )
    p.add_argument("--out", type=Path, metavar="CSV", help="write the ranked table of every image")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out table")
    p.add_argument(
        "--pixel-size", type=POSITIVE, metavar="NM", help="nm/px; overrides the files' calibration"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, mps")
    p.set_defaults(func=run)


def labelled_files(args: argparse.Namespace) -> dict[Path, str]:
    """Resolved path -> label of every image the --labels table names (none without it)."""
    if args.labels is None:
        return {}
    table, paths = read_labelled_paths(args.labels, args.images_root)
    return {p.resolve(): label for p, label in zip(paths, table["label"], strict=True)}


def run(args: argparse.Namespace) -> int:
    """Classify the collection with a progress bar; print the suggestions, write the table."""
    from napari_nanowire.core.io import atomic_path, file_frames, input_files
    from napari_nanowire.core.predict import (
        NEXT_MARK,
        Predictor,
        classify_frames,
        ranked_table,
        suggestions,
    )
    from napari_nanowire.core.predict.files import frame_count

    if args.out is not None:
        check_out(args.out, args.overwrite, "table")
    labels = labelled_files(args)
    files = input_files(args.images)
    listed = {f.resolve() for f in files}
    files += [path for path in labels if path not in listed]
    names: list[str] = []
    given: list[str | None] = []

    def items():
        """(index, frame, pixel size) of every frame, noting its name and label."""
        for i, found in enumerate(file_frames(files, args.pixel_size)):
            stack = found.index is not None
            names.append(f"{found.path}[{found.index}]" if stack else str(found.path))
            given.append(None if stack else labels.get(found.path.resolve()))
            yield i, found.frame, found.pixel_size_nm

    predictor = Predictor.load(args.model, args.device)
    predictor.features_kept = None  # one pass over the collection
    stop = threading.Event()
    result = {}

    def events():
        result["prediction"] = yield from classify_frames(
            predictor, items(), sum(frame_count(f) for f in files), stop
        )

    if run_job(events(), stop) or result.get("prediction") is None:
        return 130
    table = ranked_table(result["prediction"], names, given, args.count)
    ranked = suggestions(table)
    done = sum(label is not None for label in given)
    print(
        f"{len(table)} image(s), {done} labelled; label these next (typical of what no label "
        "covers yet, the largest part first):"
    )
    for rank, name, predicted, confidence in ranked[
        [NEXT_MARK, "image", "predicted", "confidence"]
    ].itertuples(index=False):
        print(f"{rank:>4}  {name}  (predicted {predicted}, {confidence:.0%})")
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            table.drop(columns="slice").to_csv(tmp, index=False)
        print(f"wrote {args.out}")
    return 0
