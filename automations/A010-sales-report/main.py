"""A010-sales-report: turns sales lines into a CSV and a PDF report in the run's outputs directory.

Input (stdin, JSON): {"title": "...", "sales": [{"region": "North", "product": "A", "amount": 12.5}, ...]}.
Without input, a small built-in sample is used, so the automation works offline and on a schedule.
"""

import csv
import json
import os
import sys
from collections import defaultdict
from datetime import UTC, datetime

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

SAMPLE = {
    "title": "Weekly sales (sample data)",
    "sales": [
        {"region": "North", "product": "Widgets", "amount": 1200.0},
        {"region": "North", "product": "Gadgets", "amount": 310.5},
        {"region": "South", "product": "Widgets", "amount": 870.25},
        {"region": "West", "product": "Gizmos", "amount": 99.9},
    ],
}


def load() -> dict:
    raw = sys.stdin.read().strip()
    if not raw:
        return SAMPLE
    doc = json.loads(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("sales"), list):
        raise ValueError('input must be {"sales": [{"region", "product", "amount"}, ...]}')
    return doc


def main() -> int:
    try:
        doc = load()
    except ValueError as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return 2
    totals: dict[str, float] = defaultdict(float)
    for line in doc["sales"]:
        totals[str(line["region"])] += float(line["amount"])
    out = os.environ.get("JETQUERY_OUTPUTS", "outputs")
    os.makedirs(out, exist_ok=True)
    rows = sorted(totals.items())
    with open(os.path.join(out, "report.csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["region", "total"])
        writer.writerows([(r, f"{t:.2f}") for r, t in rows])
    title = str(doc.get("title", "Sales report"))
    styles = getSampleStyleSheet()
    table = Table([["Region", "Total"], *[(r, f"{t:,.2f}") for r, t in rows], ["All", f"{sum(totals.values()):,.2f}"]])
    table.setStyle(
        TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey), ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey)])
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    story = [Paragraph(title, styles["Title"]), Paragraph(f"Generated {stamp}", styles["Normal"]), Spacer(1, 12), table]
    SimpleDocTemplate(os.path.join(out, "report.pdf"), pagesize=A4, title=title).build(story)
    print(json.dumps({"regions": len(rows), "total": round(sum(totals.values()), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
