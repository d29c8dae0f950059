"""The tables of docs/results.md, printed from experiments' ``summary.json`` files.

docs/results.md shows each experiment's rows (mean ± std over seeds) and their differences
from a baseline with 95 % CIs, p-values and Holm-adjusted p-values, as the experiment runner
writes them (tgd_core/experiments/report.py, with p-values to two significant digits and bold
where Holm's p < 0.05). *Contrasts* pick rows from several summaries (an experiment reported
with other ``--baseline``s) and adjust their p-values by Holm over the contrasts picked, per
number — the family a section's reading is about. An *interaction* asks whether one
difference depends on another, (A − B) − (C − D) paired by seed, from the runs' ``eval.json``
in an experiment's folder or archive (e.g. does the similarity term add more with one T2 than
with another); it is one test, so its p stands unadjusted::

    python scripts/docs_tables.py means  runs/experiments/cpu_full_ablation/summary.json
    python scripts/docs_tables.py deltas runs/experiments/cpu_full_ablation/summary.json
    python scripts/docs_tables.py contrasts SUMMARY:ROW [SUMMARY:ROW ...]
    python scripts/docs_tables.py interaction RUNS_DIR A B C D

``--rows`` (means, deltas) keeps those rows in that order.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tgd_core.experiments.report import delta_cell, per_seed, plus_minus  # noqa: E402
from tgd_core.experiments.significance import (  # noqa: E402
    COMPARED,
    holm_adjusted,
    paired_difference,
)

MEANS = (("best acc", "best_accuracy", 2), ("last acc", "last_accuracy", 2),
         ("last ECE", "last_ece", 4), ("last NLL", "last_nll", 2),
         ("mean corrupted acc", "corrupted_mean", 2),
         ("Gaussian-noise acc (mean of σ)", "noise_mean", 2))
HOLM_LEVEL = 0.05  # bold: Holm-adjusted p below it


def load_rows(path: str | Path) -> dict[str, dict]:
    """The summary's rows by method name."""
    return {r["method"]: r for r in json.loads(Path(path).read_text())["rows"]}


def selected(rows: dict[str, dict], names: list[str] | None) -> list[dict]:
    missing = [n for n in names or [] if n not in rows]
    if missing:
        raise SystemExit(f"no row(s) {missing} in the summary (it has {sorted(rows)})")
    return [rows[n] for n in names] if names else list(rows.values())


def means_table(rows: list[dict]) -> list[str]:
    """Markdown: method, seeds and each number's mean ± std."""
    lines = ["| method | seeds | " + " | ".join(label for label, _, _ in MEANS) + " |",
             "|---|---:|" + "---:|" * len(MEANS)]
    for r in rows:
        cells = [plus_minus(r, key, digits) for _, key, digits in MEANS]
        lines.append(f"| {r['method']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return [_typeset(line) for line in lines]


def deltas_table(pairs: list[tuple[dict, dict]]) -> list[str]:
    """Markdown: ``row − baseline`` per (row, baseline row), each number's Δ [CI], p, Holm."""
    lines = ["| comparison | " + " | ".join(COMPARED.values()) + " |",
             "|---|" + "---:|" * len(COMPARED)]
    for row, base in pairs:
        cells = []
        for key in COMPARED:
            cell = delta_cell(row, key, base["seeds"], p_digits=2)
            holm = row.get(f"{key}_delta_p_holm")
            cells.append(f"**{cell}**" if holm is not None and holm < HOLM_LEVEL else cell)
        lines.append(f"| {row['method']} − {base['method']} | " + " | ".join(cells) + " |")
    return [_typeset(line) for line in lines]


def with_holm_over(pairs: list[tuple[dict, dict]]) -> list[tuple[dict, dict]]:
    """The pairs with each number's p-values Holm-adjusted over these pairs only."""
    rows = [dict(row) for row, _ in pairs]
    for key in COMPARED:
        adjusted = holm_adjusted([r.get(f"{key}_delta_p") for r in rows])
        for r, holm in zip(rows, adjusted, strict=True):
            r[f"{key}_delta_p_holm"] = holm
    return [(r, base) for r, (_, base) in zip(rows, pairs, strict=True)]


def contrast_pairs(specs: list[str]) -> list[tuple[dict, dict]]:
    """``SUMMARY:ROW`` → (that row, its summary's baseline row)."""
    pairs = []
    for spec in specs:
        path, _, name = spec.rpartition(":")
        rows = load_rows(path)
        (row,) = selected(rows, [name])
        if "baseline" not in row:
            raise SystemExit(f"{spec}: the row was not compared with a baseline")
        pairs.append((row, rows[row["baseline"]]))
    return pairs


def interaction_pair(runs: str | Path, names: list[str]) -> tuple[dict, dict]:
    """(A − B) − (C − D) for ``names`` = A, B, C, D, paired by seed over the seeds all four
    have evaluated in ``runs`` (``<row>/seed<k>/eval.json``), as a (row, baseline) pair of
    :func:`deltas_table` whose Holm p is its p (one test)."""
    runs = Path(runs)
    found = [{int(e.parent.name.removeprefix("seed")) for e in (runs / n).glob("seed*/eval.json")}
             for n in names]
    seeds = sorted(set.intersection(*found))
    if len(seeds) < 2:
        raise SystemExit(f"{runs}: rows {names} share {len(seeds)} evaluated seed(s); an "
                         "interaction needs two")
    numbers = {n: per_seed([json.loads((runs / n / f"seed{k}" / "eval.json").read_text())
                            for k in seeds]) for n in names}
    a, b, c, d = names
    row = {"method": f"({a} − {b})", "seeds": len(seeds)}
    for key in COMPARED:
        first, second = ([x - y for x, y in zip(numbers[m][key], numbers[n][key], strict=True)]
                         for m, n in ((a, b), (c, d)))
        difference = paired_difference(first, second)
        row |= difference.columns(key) | {f"{key}_delta_p_holm": difference.p}
    return row, {"method": f"({c} − {d})", "seeds": len(seeds)}


def _typeset(line: str) -> str:
    """Minus signs of numbers as in the docs' prose (−, not -); exponents (6.7e-05) kept."""
    return re.sub(r"(?<!\w)-(?=\d)", "−", line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="table", required=True)
    for name in ("means", "deltas"):
        s = sub.add_parser(name)
        s.add_argument("summary")
        s.add_argument("--rows", nargs="+")
    sub.add_parser("contrasts").add_argument("specs", nargs="+", metavar="SUMMARY:ROW")
    inter = sub.add_parser("interaction")
    inter.add_argument("runs", metavar="RUNS_DIR")
    inter.add_argument("names", nargs=4, metavar="ROW")
    args = p.parse_args(argv)
    if args.table == "means":
        lines = means_table(selected(load_rows(args.summary), args.rows))
    elif args.table == "deltas":
        rows = load_rows(args.summary)
        lines = deltas_table([(r, rows[r["baseline"]]) for r in selected(rows, args.rows)
                              if "baseline" in r])
    elif args.table == "contrasts":
        lines = deltas_table(with_holm_over(contrast_pairs(args.specs)))
    else:
        lines = deltas_table([interaction_pair(args.runs, args.names)])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
