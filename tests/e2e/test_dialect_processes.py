"""Seed 001's /api/v1/processes against a live server with real sandboxes: the shipped A020-report-demo
produces each report type (PDF, HTML, CSV, XLS as .xlsx), opened here with reader libraries (pypdf,
html.parser, csv, openpyxl); its parameters are validated and reach the script; a job with
notification-type B delivers a real e-mail to an SMTP server on loopback (aiosmtpd) and a stored
notification."""

from __future__ import annotations

import base64
import csv
import io
import json
import socket
import time
from collections.abc import Iterator
from email import message_from_bytes
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from aiosmtpd.controller import Controller
from pypdf import PdfReader

from tests.support.e2e import Server, launch

P = "/api/v1/processes"
DEMO = f"{P}/a020-report-demo"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, smtp: tuple[Inbox, int]) -> Iterator[Server]:
    env = {"CP_SMTP_HOST": "127.0.0.1", "CP_SMTP_PORT": str(smtp[1]), "CP_SMTP_FROM": "reports@example.org"}
    server = launch(Path(tmp_path_factory.mktemp("cp-e2e-processes")), env=env)
    yield server
    server.destroy()


class Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._in = tag in ("td", "th")

    def handle_endtag(self, tag: str) -> None:
        self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            self.cells.append(data)


def run_demo(srv: Server, report_type: str, **extra: Any) -> dict[str, Any]:
    body = {"Warehouse": "Central", "MinQty": 1, "Title": "Stock <check>", "report-type": report_type, **extra}
    r = srv.client.post(DEMO, json=body)
    assert r.status_code == 200, r.text
    d: dict[str, Any] = r.json()
    assert d["isError"] is False, d
    assert d["process"] == "a020-report-demo" and d["summary"] == "4 line(s), 196 unit(s) in Central"
    assert d["logs"][0].startswith("Stock report for warehouse Central") and d["nodeId"]
    return d


def report_bytes(d: dict[str, Any], name: str) -> bytes:
    data = base64.b64decode(d["reportFile"])
    assert d["reportFileName"] == name and d["reportFileLength"] == len(data)
    return data


@pytest.mark.docker
def test_each_report_type_opens_with_a_reader(srv: Server) -> None:
    meta = srv.client.get(DEMO).json()
    assert [p["Name"] for p in meta["parameters"]] == ["Warehouse", "Title", "MinQty", "AsOf", "Export"]
    d = run_demo(srv, "PDF", Export=True)
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(report_bytes(d, "stock-Central.pdf"))).pages)
    assert "Stock <check>" in text and "Small widget" in text and "Warehouse Central" in text
    export = json.loads(base64.b64decode(d["exportFile"]))
    assert d["exportFileName"] == "stock-Central.json" and len(export) == 4 and d["exportFileLength"] > 0
    d = run_demo(srv, "html")
    parser = Cells()
    parser.feed(report_bytes(d, "stock-Central.html").decode())
    assert "Gadget pro <deluxe>" in parser.cells and "exportFile" not in d  # escaped in the file, read back
    d = run_demo(srv, "CSV")
    rows = list(csv.reader(io.StringIO(report_bytes(d, "stock-Central.csv").decode())))
    assert rows[0] == ["Category", "Code", "Product", "Quantity"] and len(rows) == 5
    d = run_demo(srv, "XLS")
    wb = openpyxl.load_workbook(io.BytesIO(report_bytes(d, "stock-Central.xlsx")))
    values = list(wb["Stock"].iter_rows(values_only=True))
    assert values[0][0] == "Stock <check>" and values[1] == ("Category", "Code", "Product", "Quantity")
    assert sum(int(str(v[3])) for v in values[2:]) == 196
    d = srv.client.post(DEMO, json={"Warehouse": "Central", "report-type": "CSV", "is-summary": True}).json()
    rows = list(csv.reader(io.StringIO(base64.b64decode(d["reportFile"]).decode())))
    assert [r[0] for r in rows[1:]] == ["Gadgets", "Gizmos", "Widgets"]  # is-summary reached the script
    # parameters are checked before anything starts: every problem listed
    r = srv.client.post(DEMO, json={"MinQty": "lots", "Colour": "red", "report-type": "DOC"})
    assert r.status_code == 400, r.text
    assert {e["parameter"] for e in r.json()["errors"][1:]} == {"Warehouse", "MinQty", "Colour", "report-type"}


@pytest.mark.docker
def test_job_with_email_and_notification(srv: Server, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    token = srv.user_token("operator", user="planner@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    body = {"Warehouse": "North", "report-type": "CSV", "notification-type": "B"}
    r = srv.client.post(f"{P}/jobs/a020-report-demo", json=body, headers=headers)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["IsProcessing"] is True and job["NotificationType"] == "B"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        doc = srv.client.get(f"{P}/jobs/{job['id']}", headers=headers).json()
        notes = srv.client.get("/api/v1/notifications", headers=headers).json()["data"]
        if not doc["IsProcessing"] and notes and inbox.messages and doc["notification"]["email"]:
            break
        time.sleep(0.3)
    assert doc["Result"] == 1 and doc["reportFileName"] == "stock-North.csv", doc
    assert doc["notification"]["email"] == "sent"
    assert len(notes) == 1 and notes[0]["runId"] == job["id"] and "a020-report-demo completed" in notes[0]["title"]
    rcpts, raw = inbox.messages[0]
    mail = message_from_bytes(raw)
    assert rcpts == ["planner@example.com"] and mail["From"] == "reports@example.org"
    attached = {p.get_filename(): bytes(p.get_payload(decode=True)) for p in mail.walk() if p.get_filename()}
    assert list(attached) == ["stock-North.csv"] and attached["stock-North.csv"].startswith(b"Category,Code")
