"""Content-Disposition of script-named downloads: every name survives, none can spoof what is shown."""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

import httpx
import pytest

from controlplane.api.downloads import content_disposition, shown_name


@pytest.mark.parametrize(
    ("name", "ascii_name", "utf8_name"),
    [
        ("report.csv", "report.csv", "report.csv"),
        ("raport-żółć.csv", "raport-zoc.csv", "raport-żółć.csv"),
        ("\u202egnp.exe", "gnp.exe", "gnp.exe"),  # the override that shows "exe.png" is dropped
        ('we"ird\\name.txt', "we_ird_name.txt", 'we"ird\\name.txt'),
        ("line\nbreak.txt", "linebreak.txt", "linebreak.txt"),
        ("数据.json", ".json", "数据.json"),
        ("\u200f\u200e", "download", "download"),
    ],
)
def test_names_survive_as_utf8_with_an_ascii_stand_in(name: str, ascii_name: str, utf8_name: str) -> None:
    header = content_disposition(name)
    header.encode("latin-1")  # what the server must be able to send (it failed with UnicodeEncodeError)
    assert header.startswith("attachment; ")
    assert re.search(r'filename="([^"]*)"', header)[1] == ascii_name  # type: ignore[index]
    star = header.split("filename*=", 1)[1]
    assert star.startswith("UTF-8''")
    assert unquote(star[len("UTF-8''") :]) == utf8_name


def test_a_shown_name_keeps_letters_and_drops_format_characters() -> None:
    assert shown_name("a\u202eb\u2066c\u200dd") == "abcd"
    assert shown_name("żółć") == "żółć"


async def test_an_artifact_with_a_unicode_name_downloads(api: httpx.AsyncClient) -> None:
    """It answered 500 (UnicodeEncodeError in the header) and reset the connection."""
    names = {"raport-żółć.csv": "a;b\n", "\u202egnp.exe": "not what it looks like"}
    files = {"main.py": "print('the fake backend ignores it')", "fake.json": json.dumps({"artifacts": names})}
    r = await api.post("/api/v1/automations", json={"name": "unicode-names", "files": files, "entrypoint": "main.py"})
    assert r.status_code == 201, r.text
    run = (await api.post(f"/api/v1/automations/{r.json()['id']}/runs", json={"context": "api_sync"})).json()
    hrefs = {a["path"]: a["href"].replace("http://testserver", "") for a in run["artifacts"]}
    assert set(hrefs) == set(names)
    for path, body in names.items():
        got = await api.get(hrefs[path])
        assert got.status_code == 200 and got.text == body
        disposition = got.headers["content-disposition"]
        assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == shown_name(path)
    assert "\u202e" not in unquote(disposition)
