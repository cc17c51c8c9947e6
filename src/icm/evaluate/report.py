"""Evaluation reports: Markdown (plots as PNG files beside it) and one self-contained HTML page
(plots embedded), with a confusion matrix, per-category and per-rule bars, a reliability diagram,
a threshold curve and a coverage-accuracy curve.

matplotlib is imported here only, and drawn through ``matplotlib.figure.Figure`` (the Agg canvas,
no pyplot state), so reports can be made from threads and headless machines.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icm.evaluate.meq import CRITERIA, MEQSummary
from icm.evaluate.metrics import BinaryReport
from icm.evaluate.verdicts import VerdictEvaluation
from icm.policy.schema import slugify

_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


@dataclass
class Plot:
    name: str  # file stem
    title: str
    png: bytes


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("reports need matplotlib: pip install 'icm-assistant[eval]'") from exc
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(report: BinaryReport, metric: str) -> str:
    interval = report.ci.get(metric)
    return "" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


# -- plots ------------------------------------------------------------------------------------


def confusion_plot(evaluation: VerdictEvaluation) -> Plot:
    c = evaluation.overall.confusion
    fig = _figure(4.2, 3.6)
    ax = fig.subplots()
    cells = [[c.tn, c.fp], [c.fn, c.tp]]
    ax.imshow(cells, cmap="Blues")
    top = max(max(row) for row in cells) or 1
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cells[i][j]), ha="center", va="center", fontsize=14,
                    color="white" if cells[i][j] > top / 2 else "black")
    ax.set_xticks([0, 1], ["complies", "violates"])
    ax.set_yticks([0, 1], ["complies", "violates"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    ax.set_title(f"Confusion matrix: {evaluation.name}")
    return Plot(f"confusion-{slugify(evaluation.name, default='run')}", f"Confusion matrix ({evaluation.name})",
                _png(fig))


def group_bars(evaluations: Sequence[VerdictEvaluation], group: str) -> Plot | None:
    """Accuracy (judged labels) per category or per rule, one bar per predictions file."""
    groups = sorted({k for e in evaluations for k in getattr(e, group)})
    if len(groups) < 2:
        return None  # one bar repeats the summary table
    fig = _figure(max(6.0, 0.32 * len(groups) * max(1, len(evaluations)) + 2), 4.2)
    ax = fig.subplots()
    width = 0.8 / len(evaluations)
    for k, evaluation in enumerate(evaluations):
        reports: dict[str, BinaryReport] = getattr(evaluation, group)
        values = [
            (reports[g].metrics["accuracy"] or 0.0) if g in reports else 0.0 for g in groups
        ]
        xs = [i + (k - (len(evaluations) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, values, width=width, label=evaluation.name, color=_COLOURS[k % len(_COLOURS)])
    ax.set_xticks(range(len(groups)), groups, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (judged labels)")
    what = "category" if group == "per_category" else "rule"
    ax.set_title(f"Accuracy per {what}")
    if len(evaluations) > 1:
        ax.legend(fontsize=8)
    return Plot(f"accuracy-per-{what}", f"Accuracy per {what}", _png(fig))


def reliability_plot(evaluations: Sequence[VerdictEvaluation]) -> Plot | None:
    usable = [e for e in evaluations if e.curves.reliability]
    if not usable:
        return None
    fig = _figure(4.8, 4.2)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for k, evaluation in enumerate(usable):
        bins = [b for b in evaluation.curves.reliability if b.count]
        colour = _COLOURS[k % len(_COLOURS)]
        xs = [b.mean_probability for b in bins]
        ys = [b.positive_rate for b in bins]
        ax.plot(xs, ys, color=colour, linewidth=1, alpha=0.6)
        # marker area follows the bin's count, so a bin of one item does not look like a trend
        total = sum(b.count for b in bins)
        ax.scatter(xs, ys, s=[20 + 400 * b.count / total for b in bins], color=colour,
                   label=f"{evaluation.name} (ECE {_fmt(evaluation.overall.ece)})", zorder=3)
        for b, x, y in zip(bins, xs, ys, strict=True):
            ax.annotate(f"n={b.count}", (x, y), textcoords="offset points", xytext=(6, -12),
                        fontsize=7, color=colour)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted p(violates) in bin")
    ax.set_ylabel("share that violates")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=8)
    return Plot("reliability", "Reliability diagram", _png(fig))


def threshold_plot(evaluation: VerdictEvaluation) -> Plot | None:
    curve = evaluation.curves.thresholds
    if not curve:
        return None
    fig = _figure(5.6, 4.0)
    ax = fig.subplots()
    ascending = sorted(curve, key=lambda c: c["threshold"])
    xs = [c["threshold"] for c in ascending]
    # violates when p >= t: between two scores the metrics are those of the higher one ("pre")
    for key, colour in (("precision", _COLOURS[0]), ("recall", _COLOURS[1]), ("f1", _COLOURS[2])):
        ax.step(xs, [c[key] for c in ascending], where="pre", label=key, color=colour)
    best = evaluation.overall.best_f1_threshold
    if best is not None:
        ax.axvline(best["threshold"], color="grey", linestyle=":",
                   label=f"best F1 {best['f1']:.3f} at {best['threshold']:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("threshold on p(violates)")
    ax.set_title(f"Threshold curve: {evaluation.name}")
    ax.legend(fontsize=8)
    return Plot(f"thresholds-{slugify(evaluation.name, default='run')}", f"Threshold curve ({evaluation.name})",
                _png(fig))


def selective_plot(evaluations: Sequence[VerdictEvaluation]) -> Plot | None:
    usable = [e for e in evaluations if e.curves.selective]
    if not usable:
        return None
    fig = _figure(5.2, 4.0)
    ax = fig.subplots()
    for k, evaluation in enumerate(usable):
        points = evaluation.curves.selective
        ax.plot([p["coverage"] for p in points], [p["accuracy"] for p in points],
                color=_COLOURS[k % len(_COLOURS)], label=evaluation.name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("coverage (most confident share kept)")
    ax.set_ylabel("accuracy")
    ax.set_title("Coverage vs accuracy")
    ax.legend(fontsize=8)
    return Plot("coverage-accuracy", "Coverage vs accuracy", _png(fig))


# -- verdict report ---------------------------------------------------------------------------


_SUMMARY_ROWS = ("accuracy", "precision", "recall", "f1", "balanced_accuracy")


def _summary_table(evaluations: Sequence[VerdictEvaluation]) -> tuple[list[str], list[list[str]]]:
    header = ["metric"] + [e.name for e in evaluations]
    rows = []
    for metric in _SUMMARY_ROWS:
        rows.append([metric] + [
            _fmt(e.overall.metrics[metric]) + _ci(e.overall, metric) for e in evaluations
        ])
    for label, get in (
        ("ROC-AUC", lambda r: _fmt(r.roc_auc)),
        ("PR-AUC", lambda r: _fmt(r.pr_auc)),
        ("ECE", lambda r: _fmt(r.ece)),
        ("best-F1 threshold", lambda r: "n/a" if r.best_f1_threshold is None else
         f"{r.best_f1_threshold['threshold']:.3f} (F1 {r.best_f1_threshold['f1']:.3f})"),
        ("labels", lambda r: str(r.n)),
        ("coverage (judged)", lambda r: f"{_fmt(r.coverage)} ({r.judged}/{r.n})"),
        ("not covered", lambda r: ", ".join(f"{k} {v}" for k, v in r.uncovered.items())),
        ("accuracy, uncovered = wrong", lambda r: _fmt(r.accuracy_all)),
    ):
        rows.append([label] + [get(e.overall) for e in evaluations])
    return header, rows


def _group_table(evaluation: VerdictEvaluation, group: str) -> tuple[list[str], list[list[str]]]:
    header = [group, "labels", "coverage", "accuracy", "precision", "recall", "F1", "uncertain",
              "errors", "missing"]
    rows = []
    reports: dict[str, BinaryReport] = getattr(evaluation, f"per_{group}")
    for name, r in reports.items():
        rows.append([name, str(r.n), _fmt(r.coverage), _fmt(r.metrics["accuracy"]),
                     _fmt(r.metrics["precision"]), _fmt(r.metrics["recall"]),
                     _fmt(r.metrics["f1"]), str(r.uncovered["uncertain"]),
                     str(r.uncovered["error"]), str(r.uncovered["missing"])])
    return header, rows


def verdict_plots(evaluations: Sequence[VerdictEvaluation]) -> list[Plot]:
    plots: list[Plot | None] = [confusion_plot(e) for e in evaluations]
    plots += [group_bars(evaluations, "per_category"), group_bars(evaluations, "per_rule"),
              reliability_plot(evaluations)]
    plots += [threshold_plot(e) for e in evaluations]
    plots.append(selective_plot(evaluations))
    return [p for p in plots if p is not None]


def write_verdict_report(
    evaluations: Sequence[VerdictEvaluation], out_dir: str | Path, title: str = "icm evaluation"
) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``plots/*.png``) and ``report.html`` (plots embedded)."""
    sections: list[tuple[str, list[str], list[list[str]]]] = [
        ("Summary", *_summary_table(evaluations))
    ]
    for evaluation in evaluations:
        prefix = f"{evaluation.name}: " if len(evaluations) > 1 else ""
        if evaluation.per_rule:
            sections.append((f"{prefix}per rule", *_group_table(evaluation, "rule")))
        if evaluation.per_category:
            sections.append((f"{prefix}per category", *_group_table(evaluation, "category")))
    notes = [
        "Positive class: violates. Classification metrics use the judged labels (violates or "
        "complies); coverage is their share, and the labels not covered are uncertain verdicts, "
        "images that could not be judged (errors), or labels without a prediction (missing).",
        "Intervals: 95% percentile bootstrap over labels (1000 resamples). Probability metrics "
        "(ROC-AUC, PR-AUC, ECE over 10 equal-width bins, best-F1 threshold) use judged labels "
        "that carry a probability.",
    ]
    return _write(out_dir, title, notes, sections, verdict_plots(evaluations))


# -- MEQ report -------------------------------------------------------------------------------


def meq_plots(summary: MEQSummary) -> list[Plot]:
    plots = []
    if summary.judged:
        fig = _figure(6.2, 3.6)
        ax = fig.subplots()
        values = [summary.means[c] or 0.0 for c in CRITERIA]
        bars = ax.bar(CRITERIA, values, color=_COLOURS[: len(CRITERIA)])
        for bar, value in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.1f}", ha="center")
        ax.set_ylim(0, 105)
        ax.set_ylabel("mean score (0-100)")
        ax.set_title(f"Explanation quality, {summary.judged} judged")
        plots.append(Plot("meq-criteria", "Mean judge scores", _png(fig)))
        fig = _figure(5.0, 3.6)
        ax = fig.subplots()
        accuracy = [item["accuracy"] for item in summary.per_item if "accuracy" in item]
        ax.hist(accuracy, bins=[0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100.01], color=_COLOURS[0],
                edgecolor="white")
        ax.set_xlabel("judge accuracy score")
        ax.set_ylabel("explanations")
        ax.set_title("Distribution of accuracy scores")
        plots.append(Plot("meq-accuracy-hist", "Accuracy score distribution", _png(fig)))
    return plots


def write_meq_report(
    summary: MEQSummary, out_dir: str | Path, title: str = "icm explanation quality (MEQ)"
) -> tuple[Path, Path]:
    rows = [[c, _fmt(summary.means[c], 1)] for c in CRITERIA]
    rows.append(["MEQ (mean accuracy / 100)", _fmt(summary.meq)])
    rows.append(["judged / total", f"{summary.judged} / {summary.n}"])
    sections: list[tuple[str, list[str], list[list[str]]]] = [("Judge scores", ["", "mean"], rows)]
    if summary.reference_metrics:
        sections.append(("Reference metrics (no judge)", ["metric", "mean"],
                         [[k, _fmt(v)] for k, v in summary.reference_metrics.items()]))
    item_keys = ["image", *CRITERIA, "rouge_l", "bleu", "embedding_similarity", "rep4",
                 "degenerate", "error"]
    present = [k for k in item_keys if any(k in item for item in summary.per_item)]
    item_rows = [
        [f"{item[k]:.0f}" if k in CRITERIA and item.get(k) is not None else _cell(item.get(k))
         for k in present]
        for item in summary.per_item
    ]
    sections.append(("Per explanation", present, item_rows))
    notes = ["Scores 0-100 from the judge; MEQ, as in the paper, is the mean accuracy / 100. "
             "ROUGE-L and embedding similarity are 0-1, BLEU 0-100; degenerate = looping text."]
    return _write(out_dir, title, notes, sections, meq_plots(summary))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) <= 1 else f"{value:.1f}"
    return str(value)


# -- writing ----------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def clean(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(clean(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.25rem .5rem;
text-align:left}th{background:#f3f5f7}tr:nth-child(even) td{background:#fafafa}
.plots{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}figcaption{font-size:.85rem;color:#555}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:.9rem}.scroll{overflow-x:auto}
"""


def _write(
    out_dir: str | Path,
    title: str,
    notes: list[str],
    sections: list[tuple[str, list[str], list[list[str]]]],
    plots: list[Plot],
) -> tuple[Path, Path]:
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for plot in plots:
        (out / "plots" / f"{plot.name}.png").write_bytes(plot.png)

    md = [f"# {title}", ""] + [f"{n}\n" for n in notes]
    if plots:
        md += ["## Plots", ""] + [f"![{p.title}](plots/{p.name}.png)\n" for p in plots]
    for heading, header, rows in sections:
        md += [f"## {heading}", "", _md_table(header, rows), ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), "utf-8")

    figures = "".join(
        f'<figure><img alt="{html.escape(p.title)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.png).decode()}"><figcaption>{html.escape(p.title)}</figcaption>'
        "</figure>"
        for p in plots
    )
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
             f"{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    # Numbers first (what was asked), then the pictures that explain them.
    heading, header, rows = sections[0]
    parts += [f"<h2>{html.escape(heading)}</h2>", _html_table(header, rows)]
    if plots:
        parts += ["<h2>Plots</h2>", f'<div class="plots">{figures}</div>']
    for heading, header, rows in sections[1:]:
        parts += [f"<h2>{html.escape(heading)}</h2>", _html_table(header, rows)]
    parts.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("".join(parts), "utf-8")
    return md_path, html_path
