"""A020-report-demo: the processes API's report conventions (seed 001), end to end.

Input (stdin, JSON, validated by the control plane against automation.json's parameters, defaults filled
in): Warehouse, Title, MinQty, AsOf, Export, plus the dialect's report-type (HTML, CSV, XLS, PDF) and
is-summary. The same values arrive as JETQUERY_PARAM_<NAME>, JETQUERY_REPORT_TYPE and JETQUERY_IS_SUMMARY.

What it writes (the control plane turns it into the answer of POST /api/v1/processes/a020-report-demo):
  $JETQUERY_OUTPUTS/process/summary.txt          -> "summary"
  $JETQUERY_OUTPUTS/process/report/stock-<w>.*   -> reportFile, reportFileName, reportFileLength
  $JETQUERY_OUTPUTS/process/export/stock-<w>.json -> exportFile, ... (with Export true)
  stdout lines                                    -> "logs"
XLS is produced as an Office Open XML workbook (openpyxl) named .xlsx: the legacy binary format has no
maintained writer.
"""

import csv
import html
import io
import json
import os
import re
import sys
from collections import defaultdict
from datetime import UTC, datetime

ITEMS = [
    ("Widgets", "W-100", "Small widget", 120),
    ("Widgets", "W-200", "Large widget", 15),
    ("Gadgets", "G-010", "Gadget basic", 0),
    ("Gadgets", "G-020", "Gadget pro <deluxe>", 42),
    ("Gizmos", "Z-001", "Gizmo", 7),
]
EXTENSIONS = {"PDF": "pdf", "HTML": "html", "CSV": "csv", "XLS": "xlsx"}


def lines_for(params):
    """Sample stock lines of the warehouse (deterministic per name), filtered by MinQty."""
    shift = sum(map(ord, params["Warehouse"])) % 5
    rows = [(cat, code, name, qty + shift if qty else 0) for cat, code, name, qty in ITEMS]
    return [r for r in rows if r[3] >= params.get("MinQty", 0)]


def summarise(rows):
    totals = defaultdict(int)
    for cat, _, _, qty in rows:
        totals[cat] += qty
    return [(cat, "", f"{len([r for r in rows if r[0] == cat])} line(s)", qty) for cat, qty in sorted(totals.items())]


def write_csv(rows, header):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_html(rows, header, title, subtitle):
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>\n" for row in rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    doc = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{html.escape(title)}</title></head><body>\n<h1>{html.escape(title)}</h1>\n<p>{html.escape(subtitle)}</p>\n"
        f'<table border="1">\n<tr>{head}</tr>\n{cells}</table>\n</body></html>\n'
    )
    return doc.encode("utf-8")


def write_xlsx(rows, header, title):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Stock"
    ws.append([title])
    ws.append(header)
    for row in rows:
        ws.append(list(row))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def write_pdf(rows, header, title, subtitle):
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    buf = io.BytesIO()
    styles = getSampleStyleSheet()
    table = Table([header, *[[str(c) for c in row] for row in rows]])
    table.setStyle(
        TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey), ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey)])
    )
    doc = SimpleDocTemplate(buf, pagesize=A4, title=title)
    doc.build(
        [
            Paragraph(html.escape(title), styles["Title"]),
            Paragraph(html.escape(subtitle), styles["Normal"]),
            Spacer(1, 12),
            table,
        ]
    )
    return buf.getvalue()


def save(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def main():
    raw = sys.stdin.read().strip()
    params = json.loads(raw) if raw else {}
    if "Warehouse" not in params:
        print("Warehouse is missing (run this through the processes API or give the parameters)", file=sys.stderr)
        return 2
    report_type = os.environ.get("JETQUERY_REPORT_TYPE", params.get("report-type", "PDF")).upper()
    if report_type not in EXTENSIONS:
        print(f"unknown report-type {report_type}", file=sys.stderr)
        return 2
    summary_only = os.environ.get("JETQUERY_IS_SUMMARY", "false") == "true"
    warehouse = params["Warehouse"]
    title = params.get("Title") or "Stock report"
    as_of = params.get("AsOf") or datetime.now(UTC).date().isoformat()
    print(f"Stock report for warehouse {warehouse} as of {as_of} ({report_type}{', summary' if summary_only else ''})")
    rows = lines_for(params)
    print(f"{len(rows)} stock line(s) with quantity >= {params.get('MinQty', 0)}")
    header = ["Category", "Code", "Product", "Quantity"]
    if summary_only:
        rows, header = summarise(rows), ["Category", "", "Lines", "Quantity"]
    subtitle = f"Warehouse {warehouse}, as of {as_of}"
    if report_type == "PDF":
        data = write_pdf(rows, header, title, subtitle)
    elif report_type == "HTML":
        data = write_html(rows, header, title, subtitle)
    elif report_type == "CSV":
        data = write_csv(rows, header)
    else:
        data = write_xlsx(rows, header, title)
    out = os.environ.get("JETQUERY_OUTPUTS", "outputs")
    stem = "stock-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", warehouse).strip("-") or "warehouse")
    save(os.path.join(out, "process", "report", f"{stem}.{EXTENSIONS[report_type]}"), data)
    print(f"report {stem}.{EXTENSIONS[report_type]}: {len(data)} bytes")
    if params.get("Export"):
        export = [{"category": c, "code": k, "product": n, "quantity": q} for c, k, n, q in lines_for(params)]
        save(os.path.join(out, "process", "export", f"{stem}.json"), json.dumps(export, indent=1).encode())
        print(f"export {stem}.json: {len(export)} line(s)")
    total = sum(r[3] for r in rows)
    save(os.path.join(out, "process", "summary.txt"), f"{len(rows)} line(s), {total} unit(s) in {warehouse}".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
