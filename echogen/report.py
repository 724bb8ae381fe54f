"""Figures and tables of the workflow report: video strips, EF scatter, loss curves, metrics.

Every function writes one file atomically and deterministically (the same inputs give the
same bytes), so Snakemake's report and reruns see stable outputs. Plots draw on a bare
matplotlib :class:`~matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so
no global figure state or interactive backend is involved.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from echogen.data.errors import DataError
from echogen.data.io import atomic_path
from echogen.data.video import VIDEO_SUFFIXES, read_video, resize_frames
from echogen.metrics.frame_folders import list_frames
from echogen.metrics.scores import ef_metrics

log = logging.getLogger(__name__)

# Columns of a training log that are bookkeeping, not losses; loss_curves leaves them out.
NOT_LOSSES = ("step", "epoch", "lr", "learning_rate", "time", "seconds", "elapsed", "samples")
# A positive curve spanning more than this ratio is drawn on a log axis.
LOG_SCALE_RATIO = 100.0
DPI = 100


def _load_video(path: Path, max_frames: int) -> np.ndarray:
    """The first ``max_frames`` frames of a jpg folder or an .avi/.mp4 file, grey (T, H, W)."""
    if path.is_dir():
        frames = []
        for frame_path in list_frames(path)[:max_frames]:
            try:
                with Image.open(frame_path) as image:
                    frame = np.asarray(image.convert("L"))
            except (UnidentifiedImageError, OSError) as err:
                raise DataError(
                    frame_path, f"cannot read the image ({err})", "re-export it"
                ) from err
            if frames and frame.shape != frames[0].shape:
                raise DataError(
                    frame_path,
                    f"frame size {frame.shape} differs from {frames[0].shape} earlier in the video",
                    "give every frame of a video one size",
                )
            frames.append(frame)
        return np.stack(frames)
    if path.suffix in VIDEO_SUFFIXES:
        return read_video(path)[:max_frames]
    raise DataError(
        path,
        "not a folder of frames nor an .avi/.mp4 video",
        "pass video folders (<video>/<NNNN>.jpg) or video files",
    )


def video_strip_gif(
    real_videos: list[str | Path],
    fake_videos: list[str | Path],
    out_gif: str | Path,
    frames: int = 32,
    size: int = 112,
    per_row: int = 4,
    fps: float = 25.0,
) -> int:
    """An animated GIF of real videos (top row) above generated videos (bottom row).

    GIF frame ``t`` shows frame ``t`` of every video, each resized to ``size × size`` and
    laid left to right in the order given; a row with fewer videos than the other is padded
    with black tiles. The GIF is greyscale, so pixel values are stored exactly.

    Args:
        real_videos: real videos, each a folder of numbered frames (``<video>/<NNNN>.jpg``,
            ordered by number) or an .avi/.mp4 file; the first ``per_row`` are shown.
        fake_videos: generated videos, same forms.
        out_gif: the GIF, written atomically.
        frames: most GIF frames; fewer when the shortest shown video is shorter.
        size: tile side in pixels.
        per_row: most videos per row.
        fps: playback rate (GIF delays are whole hundredths of a second).

    Returns:
        The number of frames written: ``min(frames, shortest shown video)``. Pillow merges
        consecutive identical frames (all tiles still) into one longer frame, so a reader may
        count fewer.
    """
    if not real_videos or not fake_videos:
        raise ValueError(
            f"need real and generated videos, got {len(real_videos)} and {len(fake_videos)}"
        )
    if frames < 1 or size < 1 or per_row < 1 or fps <= 0:
        raise ValueError(
            f"frames, size and per_row must be >= 1 and fps > 0, got {frames}, {size}, "
            f"{per_row}, {fps}"
        )
    rows = [[Path(p) for p in real_videos[:per_row]], [Path(p) for p in fake_videos[:per_row]]]
    videos = [
        [resize_frames(_load_video(p, frames), size) for p in row]
        for row in tqdm(rows, desc="video strip", leave=False)
    ]
    n = min(frames, *(len(v) for row in videos for v in row))
    columns = max(len(row) for row in rows)
    canvas = np.zeros((n, len(rows) * size, columns * size), dtype=np.uint8)  # (T, H, W)
    for r, row in enumerate(videos):
        for c, video in enumerate(row):
            canvas[:, r * size : (r + 1) * size, c * size : (c + 1) * size] = video[:n]
    images = [Image.fromarray(frame, mode="L") for frame in canvas]
    with atomic_path(out_gif) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=max(20, round(1000 / fps / 10) * 10),
            loop=0,
        )
    log.info("video strip %s: %d frames of %dx%d", out_gif, n, columns * size, len(rows) * size)
    return n


def _save(figure: Figure, out_png: str | Path) -> None:
    FigureCanvasAgg(figure)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)


def ef_scatter(
    per_video: str | Path | pd.DataFrame,
    out_png: str | Path,
    title: str,
    requested: str = "EF_requested",
    predicted: str = "EF_predicted",
) -> dict[str, float | int]:
    """Scatter of the regressor's EF against the requested EF, with the identity line.

    Args:
        per_video: the per-video table of :func:`echogen.pipelines.ef_fidelity.ef_fidelity`
            (a csv path or a DataFrame); any table with the two columns works (e.g.
            ``requested="EF", predicted="EF_pred_all"`` for a regressor's test predictions).
        out_png: the figure, written atomically.
        title: axes title.
        requested: column of the requested (x) EF, %.
        predicted: column of the regressed (y) EF, %.

    Returns:
        The :func:`~echogen.metrics.scores.ef_metrics` shown in the legend.
    """
    source = "per-video table" if isinstance(per_video, pd.DataFrame) else str(per_video)
    if not isinstance(per_video, pd.DataFrame):
        if not Path(per_video).is_file():
            raise DataError(per_video, "the per-video EF table does not exist", "run ef_fidelity")
        per_video = pd.read_csv(per_video)
    missing = [c for c in (requested, predicted) if c not in per_video]
    if missing:
        raise DataError(
            source, f"columns {missing} are missing", "pass the EF fidelity per-video table", row=1
        )
    if per_video.empty:
        raise DataError(source, "the table has no rows", "score some videos first")
    x = pd.to_numeric(per_video[requested], errors="coerce").to_numpy(np.float64)
    y = pd.to_numeric(per_video[predicted], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~(np.isfinite(x) & np.isfinite(y)))
    if len(bad):
        raise DataError(
            source,
            f"{requested} or {predicted} is not a finite number",
            "every video needs both EF values",
            row=int(bad[0]) + 2,
        )
    scores = ef_metrics(x, y)

    figure = Figure(figsize=(4.8, 4.8), layout="constrained")
    axes = figure.add_subplot()
    low, high = min(x.min(), y.min()), max(x.max(), y.max())
    margin = max(1.0, 0.05 * (high - low))
    limits = (low - margin, high + margin)
    axes.plot(limits, limits, color="0.4", linestyle="--", linewidth=1, label="identity")
    axes.scatter(
        x,
        y,
        s=14,
        alpha=0.7,
        color="tab:blue",
        label=f"{scores['n']} videos: MAE {scores['mae']:.2f}, R² {scores['r2']:.3f}",
    )
    axes.set(
        xlim=limits,
        ylim=limits,
        xlabel="requested EF (%)",
        ylabel="regressor EF (%)",
        title=title,
        aspect="equal",
    )
    axes.legend(loc="upper left", fontsize="small")
    axes.grid(alpha=0.3)
    _save(figure, out_png)
    return scores


def _loss_columns(log_csv: Path, table: pd.DataFrame, columns: list[str] | None) -> list[str]:
    if columns is not None:
        chosen = [c for c in columns if c in table]
        if not chosen:
            raise DataError(
                log_csv, f"none of the columns {columns} is in the log", "check the column names"
            )
    else:
        chosen = [
            c
            for c in table.columns
            if c not in NOT_LOSSES and pd.api.types.is_numeric_dtype(table[c])
        ]
        if not chosen:
            raise DataError(log_csv, "the log has no numeric loss column", "check the log file")
    empty = [c for c in chosen if table[c].notna().sum() == 0]
    return [c for c in chosen if c not in empty] or chosen


def loss_curves(
    logs: dict[str, str | Path], out_png: str | Path, columns: list[str] | None = None
) -> None:
    """Training curves: one panel per log, every numeric loss column against ``step``.

    Args:
        logs: panel title -> training log csv with a ``step`` column (e.g. the ``log.csv``
            of a model folder: train_loss, val_loss, loss, rec, kl, g, d, ...).
        out_png: the figure, written atomically.
        columns: columns to draw (those present in each log); None = every numeric column
            except bookkeeping ones (:data:`NOT_LOSSES`). Rows where a column is empty (e.g.
            validation logged once per epoch) are skipped for that column. A panel whose
            values are all positive and span more than :data:`LOG_SCALE_RATIO` uses a log axis.
    """
    if not logs:
        raise ValueError("no training logs given")
    n = len(logs)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    figure = Figure(figsize=(4.6 * ncols, 3.4 * nrows), layout="constrained")
    for i, (label, log_csv) in enumerate(logs.items()):
        log_csv = Path(log_csv)
        if not log_csv.is_file():
            raise DataError(log_csv, "the training log does not exist", "train the model first")
        table = pd.read_csv(log_csv)
        if "step" not in table:
            raise DataError(log_csv, "column 'step' is missing", "log the optimiser step", row=1)
        axes = figure.add_subplot(nrows, ncols, i + 1)
        positive, values = True, []
        for column in _loss_columns(log_csv, table, columns):
            rows = table[["step", column]].dropna()
            y = rows[column].to_numpy(np.float64)
            marker = "o" if len(rows) <= 20 else None
            axes.plot(rows["step"], y, marker=marker, markersize=3, linewidth=1.2, label=column)
            values.append(y)
            positive = positive and bool((y > 0).all())
        flat = np.concatenate(values)
        if positive and len(flat) and flat.max() / flat.min() > LOG_SCALE_RATIO:
            axes.set_yscale("log")
        axes.set(title=label, xlabel="step", ylabel="value")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    _save(figure, out_png)


def _run_labels(paths: list[Path]) -> list[str]:
    """File stems, or full paths where two files share a stem."""
    stems = [p.stem for p in paths]
    return [s if stems.count(s) == 1 else str(p) for s, p in zip(stems, paths, strict=True)]


def _plumbing(record: dict) -> list[str]:
    """Networks of a metric record whose weights are not verified."""
    from echogen.metrics.generation import unverified_networks  # torch: only when needed

    return unverified_networks({"detectors": {}, **record})


def _base_metric(name: str, details: dict) -> str:
    """The details key of a metric value (``is50k_mean`` -> ``is50k``, ``ssim_std`` -> ``ssim``)."""
    for suffix in ("_mean", "_std"):
        if name.endswith(suffix) and name[: -len(suffix)] in details:
            return name[: -len(suffix)]
    return name


def _cell(value) -> str:
    """A table cell: floats to 6 significant digits, lists as ``a×b``, None as a dash."""
    if value is None:
        return "&mdash;"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return html.escape("×".join(str(v) for v in value))
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return lines + ["</table>"]


def metric_summary_html(
    json_paths: list[str | Path], out_html: str | Path, title: str = "Generation metrics"
) -> None:
    """One HTML page with the generation metric records of several runs.

    The first table has one row per run (metric JSON, labelled by its file stem) and one
    column per metric; the second lists, per run and metric, the value with its item counts
    (n_real, n_fake), clip length and resolutions. A run whose detector or LPIPS weights are
    not the published ones is marked PLUMBING CHECK, as its text table is.

    Args:
        json_paths: records of :func:`echogen.metrics.generation.write_metric_table`
            (``results/metrics/*.json``).
        out_html: the page, written atomically.
        title: page heading.
    """
    if not json_paths:
        raise ValueError("no metric files given")
    paths = [Path(p) for p in json_paths]
    records = []
    for path in paths:
        if not path.is_file():
            raise DataError(path, "the metric file does not exist", "compute the metrics first")
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(path, f"not valid JSON ({err})", "recompute the metrics") from err
        missing = [k for k in ("metrics", "details", "detectors") if k not in record]
        if missing:
            raise DataError(
                path, f"keys {missing} are missing", "pass files written by write_metric_table"
            )
        records.append(record)
    labels = _run_labels(paths)

    names: list[str] = []
    for record in records:
        names += [name for name in record["metrics"] if name not in names]
    summary, detail = [], []
    for label, record in zip(labels, records, strict=True):
        plumbing = _plumbing(record)
        status = (
            f'<span class="plumbing">PLUMBING CHECK ({html.escape(", ".join(plumbing))})</span>'
            if plumbing
            else "published weights"
        )
        values = record["metrics"]
        summary.append([html.escape(label), status] + [_cell(values.get(name)) for name in names])
        for name, value in values.items():
            info = record["details"].get(_base_metric(name, record["details"]), {})
            resolution = info.get("resolution") or {}
            detail.append(
                [
                    html.escape(label),
                    html.escape(name),
                    _cell(value),
                    _cell(info.get("n_real", info.get("n_pairs"))),
                    _cell(info.get("n_fake", info.get("n_pairs"))),
                    _cell(info.get("frames")),
                    _cell(resolution.get("real")),
                    _cell(resolution.get("fake")),
                    "PLUMBING CHECK" if plumbing else "",
                ]
            )

    lines = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
        "th,td{border:1px solid #999;padding:3px 8px;text-align:right}"
        "th{background:#eee}.plumbing{color:#b00;font-weight:bold}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>FID, IS and FVD follow StyleGAN-V's definitions; PLUMBING CHECK marks runs whose "
        "detector or LPIPS weights are not verified as the published files, whose numbers are "
        "not comparable to papers.</p>",
        "<h2>Summary</h2>",
    ]
    lines += _table(["run", "weights"] + names, summary)
    lines.append("<h2>Details</h2>")
    lines += _table(
        [
            "run",
            "metric",
            "value",
            "n_real",
            "n_fake",
            "frames",
            "real resolution",
            "fake resolution",
            "status",
        ],
        detail,
    )
    lines.append("<h2>Sources</h2>")
    lines.append("<ul>")
    for label, path, record in zip(labels, paths, records, strict=True):
        lines.append(
            f"<li>{html.escape(label)}: {html.escape(str(path))} (real "
            f"{html.escape(str(record.get('real_dir')))}, fake "
            f"{html.escape(str(record.get('fake_dir')))}, seed {_cell(record.get('seed'))})</li>"
        )
    lines += ["</ul>", "</body></html>"]
    with atomic_path(out_html) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _overlay(base: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """RGB ``(T, H, W, 3)`` uint8: grey ``base`` in [0, 1] with ``saliency`` in [-1, 1] laid
    over it, positive red and negative blue, opacity growing with the magnitude."""
    grey = np.repeat(np.clip(base, 0, 1)[..., None], 3, axis=-1)
    colour = np.where(saliency[..., None] >= 0, [1.0, 0.0, 0.0], [0.0, 0.3, 1.0])
    alpha = np.clip(np.abs(saliency), 0, 1)[..., None]
    return (255 * ((1 - alpha) * grey + alpha * colour)).round().astype(np.uint8)


def saliency_strip_gif(rows: list[dict], out_gif: str | Path, size: int = 112,
                       fps: float = 12.0) -> int:  # fmt: skip
    """An animated GIF of guided-backpropagation maps, one row per video: the grey clip, its
    grey-stream map over it, and the flow-stream map (the magnitude over both flow channels)
    over it. Each map is scaled by its clip's largest magnitude.

    Args:
        rows: per video ``{"grey": (T, H, W) in [0, 1], "grey_map": (T, H, W) or None,
            "flow_map": (2, T, H, W) or None}`` (a stream the model lacks is None: a black
            tile).
        out_gif: the GIF, written atomically.
        size: tile side in pixels.
        fps: playback rate.

    Returns:
        The number of frames written.
    """
    if not rows:
        raise ValueError("no video to show")
    n = min(len(row["grey"]) for row in rows)
    canvas = np.zeros((n, len(rows) * size, 3 * size, 3), dtype=np.uint8)
    for r, row in enumerate(rows):
        base = resize_frames(row["grey"][:n].astype(np.float32), size)
        tiles = [_overlay(base, np.zeros_like(base))]
        for key in ("grey_map", "flow_map"):
            saliency = row.get(key)
            if saliency is None:
                tiles.append(np.zeros((n, size, size, 3), np.uint8))
                continue
            saliency = np.asarray(saliency, np.float32)
            if saliency.ndim == 4:  # flow: magnitude over the two channels
                saliency = np.sqrt(np.square(saliency).sum(axis=0))
            saliency = resize_frames(saliency[:n], size)
            saliency = saliency / max(float(np.abs(saliency).max()), 1e-12)
            tiles.append(_overlay(base, saliency))
        for c, tile in enumerate(tiles):
            canvas[:, r * size : (r + 1) * size, c * size : (c + 1) * size] = tile
    images = [Image.fromarray(frame, mode="RGB") for frame in canvas]
    with atomic_path(out_gif) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(20, round(1000 / fps / 10) * 10), loop=0)  # fmt: skip
    log.info("saliency strip %s: %d frames, %d videos", out_gif, n, len(rows))
    return n
