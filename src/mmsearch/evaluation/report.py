"""Experiment outputs: JSON summary, per-query files, Markdown and self-contained HTML.

The summary answers "which configuration is better, and is the difference real";
the per-query files answer "which queries got worse", which is what someone
chasing a regression needs next. The HTML page embeds its chart as a data URI and
uses no external resources, so it can be attached to a ticket or opened offline.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.evaluation.metrics import STAT_TESTS, Evaluation
from mmsearch.evaluation.queries import EvalQuery
from mmsearch.evaluation.runner import ConfigRun

TOP_IDS_IN_FILES = 10


@dataclass
class ExperimentInfo:
    """What was evaluated, so a report can be reproduced from its header."""

    collection: str
    build_id: str
    queries_file: str
    judgments_file: str
    k: int
    created_at: str
    extra: dict[str, Any] = field(default_factory=dict)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


RESERVED_KEYS = ("significance", "details")


def summary(info: ExperimentInfo, runs: list[ConfigRun], evaluation: Evaluation) -> dict[str, Any]:
    """The machine-readable result: ``{config: {metric: value}, "significance", "details"}``.

    Configuration names are top-level keys so that ``data[name][metric]`` reads a
    number directly; the two reserved keys cannot be configuration names.
    """
    data: dict[str, Any] = {
        name: {metric: _number(value) for metric, value in values.items()}
        for name, values in evaluation.means.items()
    }
    data["significance"] = {
        "baseline": evaluation.baseline,
        "test": evaluation.stat_test,
        "max_p": 0.05,
        "comparisons": {
            name: {
                metric: {
                    "p_value": _number(comparison.p_values[metric]),
                    "significant": comparison.significant[metric],
                    **comparison.win_tie_loss[metric],
                }
                for metric in evaluation.metrics
            }
            for name, comparison in evaluation.comparisons.items()
        },
    }
    data["details"] = {
        "configurations": {
            run.config.name: {
                "options": run.config.options,
                "source": run.config.source,
                "answered": run.answered,
                "unanswered": len(run.unanswered),
                "mean_latency_ms": _number(_mean(list(run.latency_ms.values()))),
            }
            for run in runs
        },
        "queries": {
            "evaluated": len(evaluation.query_ids),
            "without_judgments": len(evaluation.unjudged_queries),
        },
        "experiment": vars(info),
    }
    return data


def results_of(data: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The ``{config: {metric: value}}`` part of a summary, in configuration order."""
    return {name: values for name, values in data.items() if name not in RESERVED_KEYS}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def write_outputs(
    out: Path,
    info: ExperimentInfo,
    queries: list[EvalQuery],
    runs: list[ConfigRun],
    evaluation: Evaluation,
    judgments: dict[str, dict[str, int]],
) -> dict[str, Path]:
    """Write results.json, per-query/<config>.{json,csv}, report.md, report.html, chart."""
    out.mkdir(parents=True, exist_ok=True)
    data = summary(info, runs, evaluation)
    paths = {"json": out / "results.json"}
    paths["json"].write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    per_query_dir = out / "per-query"
    per_query_dir.mkdir(exist_ok=True)
    by_id = {query.id: query for query in queries}
    for run in runs:
        rows = _per_query_rows(run, evaluation, by_id, judgments)
        stem = _file_stem(run.config.name)
        json_path = per_query_dir / f"{stem}.json"
        json_path.write_text(json.dumps(rows, indent=1, default=str) + "\n", encoding="utf-8")
        _write_csv(per_query_dir / f"{stem}.csv", rows, evaluation.metrics)
    chart = out / "metrics.png"
    _write_chart(chart, evaluation)
    paths["chart"] = chart
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(markdown_report(data, evaluation, chart.name), encoding="utf-8")
    paths["html"] = out / "report.html"
    paths["html"].write_text(html_report(data, evaluation, chart.read_bytes()), encoding="utf-8")
    paths["per_query"] = per_query_dir
    return paths


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "config"


def _per_query_rows(
    run: ConfigRun,
    evaluation: Evaluation,
    queries: dict[str, EvalQuery],
    judgments: dict[str, dict[str, int]],
) -> list[dict[str, Any]]:
    rows = []
    scores = evaluation.per_query[run.config.name]
    for query_id in evaluation.query_ids:
        query = queries[query_id]
        hits = run.rankings.get(query_id, [])
        relevant = judgments.get(query_id, {})
        rows.append(
            {
                "query_id": query_id,
                "text": query.text or "",
                "image": str(query.image) if query.image else "",
                "answered": query_id not in run.unanswered,
                "relevant": len(relevant),
                **{metric: round(scores[query_id][metric], 6) for metric in evaluation.metrics},
                "top": [
                    {"id": hit.id, "score": round(hit.score, 6), "grade": relevant.get(hit.id, 0)}
                    for hit in hits[:TOP_IDS_IN_FILES]
                ],
            }
        )
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]], metrics: list[str]) -> None:
    columns = ["query_id", "text", "image", "answered", "relevant", *metrics, "top_ids"]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            top = " ".join(hit["id"] for hit in row["top"])
            writer.writerow([*(row[c] for c in columns[:-1]), top])


def _write_chart(path: Path, evaluation: Evaluation) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(evaluation.means)
    metrics = evaluation.metrics
    width = 0.8 / max(len(names), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.4 * len(metrics) + 2), 3.6), dpi=100)
    for index, name in enumerate(names):
        values = [evaluation.means[name][m] for m in metrics]
        positions = [m + (index - (len(names) - 1) / 2) * width for m in range(len(metrics))]
        axes.bar(positions, values, width=width, label=name)
    axes.set_xticks(range(len(metrics)), metrics)
    axes.set_ylim(0, 1)
    axes.set_ylabel("score")
    axes.legend(fontsize="small", ncols=min(len(names), 3))
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _significance_cell(data: dict[str, Any], name: str, metric: str) -> str:
    comparison = data["significance"]["comparisons"].get(name)
    if comparison is None:
        return "baseline"
    entry = comparison[metric]
    p_value = entry["p_value"]
    mark = " *" if entry["significant"] else ""
    return f"{'-' if p_value is None else f'{p_value:.3g}'}{mark}"


def markdown_report(data: dict[str, Any], evaluation: Evaluation, chart_name: str) -> str:
    info = data["details"]["experiment"]
    judged = data["details"]["queries"]["evaluated"]
    metrics = evaluation.metrics
    lines = [
        f"# Evaluation: {info['collection']}",
        "",
        f"- build: `{info['build_id']}`; queries: `{info['queries_file']}` ({judged} judged); "
        f"judgments: `{info['judgments_file']}`; "
        f"k = {info['k']}; {info['created_at']}",
        "",
        "| configuration | " + " | ".join(metrics) + " | answered |",
        "| --- | " + " | ".join("---:" for _ in metrics) + " | ---: |",
    ]
    for name, values in results_of(data).items():
        answered = data["details"]["configurations"][name]["answered"]
        cells = " | ".join(_format(values[m]) for m in metrics)
        lines.append(f"| {name} | {cells} | {answered} |")
    test = STAT_TESTS[evaluation.stat_test]
    lines += [
        "",
        f"p-values against `{evaluation.baseline}` ({test}; * = p < 0.05):",
        "",
        "| configuration | " + " | ".join(metrics) + " |",
        "| --- | " + " | ".join("---:" for _ in metrics) + " |",
    ]
    for name in results_of(data):
        cells = " | ".join(_significance_cell(data, name, m) for m in metrics)
        lines.append(f"| {name} | {cells} |")
    lines += ["", f"![metrics]({chart_name})", ""]
    lines.append("Per-query results: `per-query/<configuration>.csv` and `.json`.")
    return "\n".join(lines) + "\n"


def html_report(data: dict[str, Any], evaluation: Evaluation, chart_png: bytes) -> str:
    info = data["details"]["experiment"]
    judged = data["details"]["queries"]["evaluated"]
    metrics = evaluation.metrics
    escape = html.escape
    head = "".join(f"<th>{escape(m)}</th>" for m in metrics)
    rows = []
    for name, values in results_of(data).items():
        cells = "".join(f"<td>{_format(values[m])}</td>" for m in metrics)
        p_cells = "".join(f"<td>{escape(_significance_cell(data, name, m))}</td>" for m in metrics)
        answered = data["details"]["configurations"][name]["answered"]
        rows.append(f"<tr><th>{escape(name)}</th>{cells}<td>{answered}</td></tr>")
        rows.append(
            f"<tr class='p'><td>p vs {escape(evaluation.baseline)}</td>{p_cells}<td></td></tr>"
        )
    image = base64.b64encode(chart_png).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Evaluation: {escape(info["collection"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr.p td {{ color: #666; font-size: 0.85em; }}
</style></head><body>
<h1>Evaluation: {escape(info["collection"])}</h1>
<p>build <code>{escape(info["build_id"])}</code>;
queries <code>{escape(info["queries_file"])}</code> ({judged} judged);
judgments <code>{escape(info["judgments_file"])}</code>;
k = {info["k"]}; {escape(info["created_at"])}</p>
<table><tr><th>configuration</th>{head}<th>answered</th></tr>
{"".join(rows)}
</table>
<p>p-values: {escape(STAT_TESTS[evaluation.stat_test])} against
<code>{escape(evaluation.baseline)}</code>; * = p &lt; 0.05.</p>
<img alt="bar chart of the metrics per configuration" src="data:image/png;base64,{image}">
<p>Per-query results: <code>per-query/&lt;configuration&gt;.csv</code> and <code>.json</code>.</p>
</body></html>
"""
