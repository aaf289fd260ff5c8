"""Main-thread stalls of the napari viewer while the plugin trains, and peak memory.

A 10 ms Qt timer runs on the main thread; the gap between two ticks minus 10 ms is a stall
(the time the event loop could not react: a click, a repaint, a slider drag). Each phase runs
in its own subprocess under Xvfb, so its peak RSS is its own:

- ``idle``: napari with the plugin's widgets docked as ``napari-nanowire gui`` has them and a
  synthetic stack loaded, no job: the floor of this machine and display;
- ``gui``: the Train widget's *Pretrain* pressed as a user does (then, with ``--jobs``, *Train
  classifier* and *Train segmenter*): the job runs in the plugin's worker, its progress goes to
  the widget, the live plot and napari's activity dock;
- ``gui-quiet``: the same with napari's animated "in progress" GIF in the status bar paused
  (a peer reaching into napari's private widgets): what that animation costs;
- ``thread``: the same core ``pretrain()`` generator driven from a plain Python thread in the
  same viewer (with the plugin's torch thread policy), its events dropped: the cost of training
  in the process (GIL, CPU) without any progress handling, to split our Qt-side cost from the
  training's.

Reported per phase: max, p99, p95 and median stall, stalls over 100 ms, peak RSS, and the worst
stalls with when they happened (seconds since the button press, the job's last event, worker
and main-thread spans overlapping them: setup, train step, epoch end, k-NN, checkpoint, the
widget's progress handlers). ``--sample`` adds a sampling profiler of the main thread's Python
stack (every 2 ms) and prints what it was doing in each worst stall.

Usage: flock /tmp/bench.lock .venv/bin/python benchmarks/bench_gui.py [--encoder resnet18]
[--image-size 112] [--epochs 2] [--jobs pretrain classifier segmenter] [--sample]
Writes benchmarks/out/bench_gui.json.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

PHASES = ("idle", "gui", "gui-quiet", "thread")
JOBS = ("pretrain", "classifier", "segmenter")
OUT = Path(__file__).parent / "out" / "bench_gui.json"
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
BIG_STALL_MS = 100.0
"""The target: the event loop never blocked for longer (issue 6)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--jobs", nargs="+", choices=JOBS, default=["pretrain"], help="gui phase")
    p.add_argument("--encoder", default="tiny")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="segmenter steps")
    p.add_argument("--n-per-class", type=int, default=6, help="stack of 4 x this many images")
    p.add_argument("--size", type=int, default=256, help="side of the synthetic images (px)")
    p.add_argument("--idle-s", type=float, default=10.0, help="length of the idle phase")
    p.add_argument("--interval-ms", type=int, default=10)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    p.add_argument("--no-project", action="store_true", help="train without a project folder")
    p.add_argument("--sample", action="store_true", help="sample the main thread's stack")
    p.add_argument("--worst", type=int, default=8, help="worst stalls listed per phase")
    p.add_argument("--out", type=Path, default=OUT, help="JSON report (default: %(default)s)")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # child process
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # child process
    return p.parse_args(argv)


# --- child side: recording ---------------------------------------------------------------


class Recorder:
    """Timer ticks, timed spans and events of one phase, in seconds of ``time.perf_counter``."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.ticks: list[float] = []
        self.spans: list[tuple[str, str, float, float]] = []  # name, thread, start, end
        self.events: list[tuple[float, str]] = []
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self.job_threads: set[int] = set()  # torch threads the training ran on
        self.timer = None

    def start_ticking(self) -> None:
        from qtpy.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start(self.interval_ms)

    def stop_ticking(self) -> None:
        self.timer.stop()

    def event(self, what: str) -> None:
        self.events.append((time.perf_counter(), what))

    def timed(self, name: str, func):
        """``func`` wrapped so that every call is recorded as a span ``name``."""

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                thread = threading.current_thread().name
                self.spans.append((name, thread, start, time.perf_counter()))

        return wrapper

    def instrument(self, owner, attribute: str, name: str | None = None) -> None:
        """Record the calls of ``owner.attribute`` (a class's method or a module's function)."""
        setattr(owner, attribute, self.timed(name or attribute, getattr(owner, attribute)))

    def sample_main_thread(self, stop: threading.Event, period_s: float = 0.002) -> None:
        """Record the main thread's Python stack every ``period_s`` until ``stop`` is set."""
        main = threading.main_thread().ident
        while not stop.wait(period_s):
            frame = sys._current_frames().get(main)
            stack = []
            while frame is not None and len(stack) < 40:
                code = frame.f_code
                where = f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}"
                stack.append(where)
                frame = frame.f_back
            self.samples.append((time.perf_counter(), tuple(stack)))


def instrument_all(rec: Recorder) -> None:
    """Time the worker's training phases and the main thread's progress handlers."""
    import torch

    from napari_nanowire.core import modelfile, pretrain
    from napari_nanowire.gui import plots, train_widget, workers

    for method in ("__init__", "end_epoch", "knn", "model_file", "save"):
        rec.instrument(pretrain._Trainer, method, f"worker {method}")
    step = rec.timed("worker train_step", pretrain._Trainer.train_step)

    def train_step(trainer):
        rec.job_threads.add(torch.get_num_threads())
        return step(trainer)

    pretrain._Trainer.train_step = train_step
    rec.instrument(modelfile, "_safetensors_layout", "worker safetensors layout")
    rec.instrument(modelfile, "write_bytes_atomic", "worker write file")
    rec.instrument(workers.JobRunner, "start", "main JobRunner.start")
    rec.instrument(workers.JobRunner, "_relay", "main activity-dock relay")
    rec.instrument(workers.JobRunner, "_finished", "main JobRunner._finished")
    rec.instrument(train_widget.TrainWidget, "_on_progress", "main TrainWidget._on_progress")
    rec.instrument(train_widget.TrainWidget, "_saved", "main TrainWidget._saved")
    rec.instrument(plots.LossPlot, "redraw", "main LossPlot.redraw")
    rec.instrument(plots.LossPlot, "start", "main LossPlot.start")


def run_until(done, timeout_s: float = 3600.0) -> None:
    """Run Qt's event loop (not a polling loop: that would stall it) until ``done()``."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    end = time.monotonic() + timeout_s
    poll = QTimer()
    poll.timeout.connect(lambda: (done() or time.monotonic() > end) and loop.quit())
    poll.start(50)
    loop.exec()
    poll.stop()
    if not done():
        raise TimeoutError(f"the phase did not finish within {timeout_s:.0f} s")


def wait_s(seconds: float) -> None:
    end = time.perf_counter() + seconds
    run_until(lambda: time.perf_counter() >= end)


def open_viewer(args: argparse.Namespace, work: Path):
    """napari as ``napari-nanowire gui`` opens it, with a stack of 4 x n_per_class images.

    The slices carry their true classes (so pretraining reports k-NN accuracy) and, unless
    ``--no-project``, a new project in ``work`` holds them as the README's workflow starts.
    """
    from napari_nanowire.cli.gui import open_viewer as open_gui
    from napari_nanowire.gui.sample_data import make_sample_stack
    from napari_nanowire.gui.state import state_for

    viewer = open_gui()
    viewer.window._qt_window.resize(1500, 950)
    viewer.layers.clear()
    for data, meta, kind in make_sample_stack(args.n_per_class, args.size):
        getattr(viewer, f"add_{kind}")(data, **meta)
    image = viewer.layers["synthetic TEM"]
    viewer.layers.selection.active = image
    if not args.no_project:
        label = step(viewer, "Label")
        label.project_box.new_project(work / "project")
    state_for(viewer).set_labels(image, list(image.metadata["true_class_labels"]))
    return viewer


def step(viewer, name: str):
    """The widget of step ``name`` in the guided workflow dock, brought to the front."""
    return viewer.window.dock_widgets["Nanowire workflow (napari-nanowire)"].show_step(name)


def train_widget(viewer, args: argparse.Namespace):
    """The docked Train widget, in front, with the run's settings."""
    widget = step(viewer, "Train")
    widget.reset_choices()
    widget.encoder.value = args.encoder
    widget.epochs.value = args.epochs
    widget.size.value = args.image_size
    widget.batch.value = args.batch_size
    widget.steps.value = args.steps
    return widget


def paint_strokes(viewer) -> None:
    """A mask layer with a few strokes on four slices, as a user paints them."""
    sys.path.insert(0, str(SCRIPTS))
    from screenshots import strokes

    masks = step(viewer, "Label").add_masks()
    truth = viewer.layers["true wire mask"].data
    for index in range(0, len(truth), max(1, len(truth) // 4)):
        masks.data[index] = strokes(truth[index])
    masks.refresh()
    viewer.layers.selection.active = viewer.layers["synthetic TEM"]
    step(viewer, "Train").reset_choices()


def pause_activity_gif(viewer) -> None:
    """Pause napari's animated "in progress" GIF in the status bar (``gui-quiet`` phase).

    Reaches into napari's private widgets: the benchmark's peer only, never the plugin.
    """
    from qtpy.QtWidgets import QLabel

    for label in viewer.window._qt_window.findChildren(QLabel):
        if label.movie() is not None:
            label.movie().setPaused(True)


def run_gui_jobs(viewer, args: argparse.Namespace, rec: Recorder) -> None:
    """Press each job's button in turn and run the event loop until the job ended."""
    widget = step(viewer, "Train")
    runner = widget.state.runner
    buttons = {
        "pretrain": widget.pretrain,
        "classifier": widget.train_classifier,
        "segmenter": widget.train_segmenter,
    }
    for job in args.jobs:
        rec.event(f"press {job}")
        if not buttons[job]():
            raise RuntimeError(f"{job} did not start: see the notification above")
        rec.event(f"started {job}")
        if args.phase == "gui-quiet":
            pause_activity_gif(viewer)
        worker = runner.worker
        worker.yielded.connect(lambda e, job=job: rec.event(f"{job} {describe(e)}"))
        worker.finished.connect(lambda job=job: rec.event(f"finished {job}"))
        run_until(lambda: not runner.running)
        if job == "pretrain" and "encoder" not in widget.state.models:
            raise RuntimeError("pretraining failed: see the notification above")
        wait_s(1.0)


def run_thread_job(viewer, args: argparse.Namespace, rec: Recorder, work: Path) -> None:
    """The core pretrain() in a plain thread, with the Train widget's settings."""
    from napari_nanowire.core.ssl.pretrain import PretrainConfig, pretrain
    from napari_nanowire.gui.pixel_size import layer_pixel_size_nm
    from napari_nanowire.gui.state import slice_labels
    from napari_nanowire.gui.workers import job_thread_policy

    layer = viewer.layers["synthetic TEM"]
    images, labels = list(np.asarray(layer.data)), slice_labels(layer)
    config = PretrainConfig(
        encoder=args.encoder,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
    )
    out = work / "encoder.nwmodel"
    sizes = [layer_pixel_size_nm(layer)] * len(images)

    def drive() -> None:
        with job_thread_policy():
            for event in pretrain(images, config, out, pixel_sizes_nm=sizes, labels=labels):
                rec.event(f"pretrain {describe(event)} (worker side)")
        rec.event("finished pretrain")

    rec.event("press pretrain")
    thread = threading.Thread(target=drive, name="bench-pretrain")
    thread.start()
    run_until(lambda: not thread.is_alive())
    wait_s(1.0)


def describe(event) -> str:
    """A progress event in a few words."""
    text = f"step {event.step}/{event.total_steps}"
    if event.metrics or event.message:
        text += f" [{event.message}]" if event.message else " [metrics]"
    return text


def run_phase(args: argparse.Namespace) -> dict:
    """One phase in this process: open the viewer, measure, return the raw records."""
    import psutil
    from pyvirtualdisplay import Display

    work = tempfile.TemporaryDirectory(prefix="bench-gui-")  # models of 100+ MB: not kept
    with work, Display(size=(1600, 1000), color_depth=24):
        from napari_nanowire.gui.torch_guard import import_torchvision

        import_torchvision()
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        rec = Recorder(args.interval_ms)
        instrument_all(rec)
        viewer = open_viewer(args, Path(work.name))
        if args.phase.startswith("gui"):
            train_widget(viewer, args)
            if "segmenter" in args.jobs:
                paint_strokes(viewer)
        wait_s(3.0)  # let napari lay out and paint
        rss_viewer_mb = psutil.Process().memory_info().rss / 2**20
        stop_sampling = threading.Event()
        if args.sample:
            threading.Thread(
                target=rec.sample_main_thread, args=(stop_sampling,), daemon=True
            ).start()
        rec.start_ticking()
        wait_s(1.0)
        if args.phase == "idle":
            rec.event("idle")
            wait_s(args.idle_s)
        elif args.phase.startswith("gui"):
            run_gui_jobs(viewer, args, rec)
        else:
            run_thread_job(viewer, args, rec, Path(work.name))
        rec.stop_ticking()
        stop_sampling.set()
        viewer.close()
    return {
        "phase": args.phase,
        "torch_threads": sorted(rec.job_threads),
        "rss_viewer_mb": rss_viewer_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ticks": rec.ticks,
        "spans": rec.spans,
        "events": rec.events,
        "samples": rec.samples,
    }


# --- parent side: analysis ---------------------------------------------------------------


def stalls_of(ticks: list[float], interval_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Stall of every tick gap (ms, clipped at 0) and the gap's start time."""
    t = np.asarray(ticks)
    return np.clip(np.diff(t) * 1000 - interval_ms, 0, None), t[:-1]


def overlapping(spans, start: float, end: float) -> list[tuple[str, float]]:
    """Spans overlapping [start, end] with the overlap in ms, largest first."""
    found: dict[str, float] = {}
    for name, _thread, a, b in spans:
        overlap = min(b, end) - max(a, start)
        if overlap > 0:
            found[name] = found.get(name, 0.0) + overlap * 1000
    return sorted(found.items(), key=lambda kv: -kv[1])


def last_event_before(events, t: float) -> str:
    before = [(time_, what) for time_, what in events if time_ <= t]
    return before[-1][1] if before else "-"


def stack_summary(samples, start: float, end: float, top: int = 3) -> list[tuple[int, str]]:
    """The most frequent stacks sampled in [start, end]: innermost frames ... Qt's caller.

    The caller is the frame the event loop called (a slot, a paint event), just inside the
    benchmark's ``run_until``; a stack ending in ``run_until`` itself is time in Qt's C++.
    """
    counts: Counter = Counter()
    for t, stack in samples:
        if start <= t <= end:
            loop = next((i for i, f in enumerate(stack) if f.endswith(" run_until")), None)
            inner = stack[: min(3, loop if loop is not None else 3)]
            entry = stack[loop - 1] if loop and loop > 3 else None
            counts[" < ".join(inner) + (f" ... {entry}" if entry else "")] += 1
    return [(n, where) for where, n in counts.most_common(top)]


def analyse(raw: dict, args: argparse.Namespace) -> dict:
    """Stall statistics and the worst stalls with their context."""
    stall, starts = stalls_of(raw["ticks"], args.interval_ms)
    press = next((t for t, what in raw["events"] if what.startswith("press")), raw["ticks"][0])
    worst = []
    for i in np.argsort(stall)[::-1][: args.worst]:
        a, b = starts[i], starts[i] + stall[i] / 1000 + args.interval_ms / 1000
        worst.append(
            {
                "stall_ms": float(stall[i]),
                "at_s": float(a - press),
                "last_event": last_event_before(raw["events"], b),
                "spans_ms": [(n, round(ms, 1)) for n, ms in overlapping(raw["spans"], a, b)],
                "main_stacks": stack_summary(raw["samples"], a, b),
            }
        )
    span_totals: dict[str, list[float]] = {}
    for name, _thread, a, b in raw["spans"]:
        span_totals.setdefault(name, []).append((b - a) * 1000)
    return {
        "phase": raw["phase"],
        "torch_threads": raw["torch_threads"],
        "duration_s": float(raw["ticks"][-1] - raw["ticks"][0]),
        "ticks": len(raw["ticks"]),
        "max_ms": float(stall.max()),
        "p99_ms": float(np.percentile(stall, 99)),
        "p95_ms": float(np.percentile(stall, 95)),
        "median_ms": float(np.median(stall)),
        "over_100ms": int((stall > BIG_STALL_MS).sum()),
        "rss_viewer_mb": raw["rss_viewer_mb"],
        "peak_rss_mb": raw["peak_rss_mb"],
        "spans": {
            n: {"count": len(v), "max_ms": max(v), "mean_ms": float(np.mean(v))}
            for n, v in sorted(span_totals.items())
        },
        "events": [(round(t - press, 3), what) for t, what in raw["events"]],
        "worst": worst,
    }


def run_child(args: argparse.Namespace, phase: str) -> dict:
    """Run ``phase`` in a fresh interpreter; its raw records come back through a file."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        command = [sys.executable, __file__, *child_argv(args), "--phase", phase]
        command += ["--result", str(result)]
        subprocess.run(command, check=True)
        return json.loads(result.read_text())


def child_argv(args: argparse.Namespace) -> list[str]:
    """The settings of this run as command-line options for a child."""
    out = ["--jobs", *args.jobs]
    for name in ("encoder", "epochs", "image_size", "batch_size", "steps", "n_per_class"):
        out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    for name in ("size", "idle_s", "interval_ms", "threads"):
        if getattr(args, name) is not None:
            out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    flags = {"--sample": args.sample, "--no-project": args.no_project}
    return out + [flag for flag, on in flags.items() if on]


def print_report(results: list[dict]) -> None:
    print("| phase | s | job threads | max ms | p99 | p95 | median | >100 ms | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        threads = ",".join(map(str, r["torch_threads"])) or "-"
        print(
            f"| {r['phase']} | {r['duration_s']:.0f} | {threads} | {r['max_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['p95_ms']:.0f} | {r['median_ms']:.1f} | "
            f"{r['over_100ms']} | {r['peak_rss_mb']:.0f} |"
        )
    for r in results:
        print(f"\n{r['phase']}: worst stalls (s after the press; last event; overlapping spans)")
        for w in r["worst"]:
            spans = ", ".join(f"{n} {ms:.0f}" for n, ms in w["spans_ms"][:4])
            print(f"  {w['stall_ms']:6.0f} ms at {w['at_s']:7.2f} s  [{w['last_event']}]  {spans}")
            for n, where in w["main_stacks"]:
                print(f"         {n:3d} x {where}")


def main() -> None:
    args = parse_args()
    if args.phase:
        args.result.write_text(json.dumps(run_phase(args)))
        return
    load_before = os.getloadavg()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    results = [analyse(run_child(args, phase), args) for phase in args.phases]
    print_report(results)
    report = {
        "meta": {
            "date": started,
            "machine": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {k: v for k, v in vars(args).items() if k not in ("phase", "result")},
        },
        "phases": results,
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
