"""FrameParser: every tag, lines split across feeds, garbage, endless lines; the bundle encoding."""

from __future__ import annotations

import base64
import json

import pytest

from controlplane.backends.protocol import (
    MAX_LINE,
    ArtifactData,
    ArtifactHead,
    Exited,
    FrameParser,
    Output,
    Skipped,
    Started,
    encode_bundle,
    encode_frame,
)


def j(doc: object) -> bytes:
    return json.dumps(doc).encode()


def parse(*chunks: bytes) -> tuple[list[object], FrameParser]:
    parser = FrameParser()
    frames: list[object] = []
    for chunk in chunks:
        frames.extend(parser.feed(chunk))
    return frames, parser


def test_every_tag() -> None:
    wire = b"".join(
        [
            encode_frame("s", j({"pid": 7})),
            encode_frame("o", b"out\x00\xff"),
            encode_frame("e", b"err"),
            encode_frame("f", j({"path": "a/b.txt", "size": 3})),
            encode_frame("d", b"abc"),
            encode_frame("k", j([{"path": "p", "reason": "symlink"}])),
            encode_frame(
                "x",
                j({"exitCode": 3, "signal": None, "oomKilled": True, "cpuSeconds": 1.5, "maxRssBytes": 9}),
            ),
        ]
    )
    frames, parser = parse(wire)
    assert frames == [
        Started(7),
        Output("stdout", b"out\x00\xff"),
        Output("stderr", b"err"),
        ArtifactHead("a/b.txt", 3),
        ArtifactData(b"abc"),
        Skipped((("p", "symlink"),)),
        Exited(exit_code=3, signal=None, oom_killed=True, cpu_seconds=1.5, max_rss_bytes=9),
    ]
    assert parser.bad_lines == 0


def test_exit_with_signal_and_defaults() -> None:
    frames, _ = parse(encode_frame("x", j({"exitCode": 137, "signal": 9})))
    assert frames == [Exited(137, 9, False, 0.0, 0)]


def test_lines_split_across_feeds_byte_by_byte() -> None:
    wire = encode_frame("o", b"hello world" * 100) + encode_frame("e", b"!")
    parser = FrameParser()
    frames = [f for i in range(len(wire)) for f in parser.feed(wire[i : i + 1])]
    assert frames == [Output("stdout", b"hello world" * 100), Output("stderr", b"!")]


def test_partial_line_waits_for_newline() -> None:
    parser = FrameParser()
    line = encode_frame("o", b"abc")
    assert list(parser.feed(line[:-1])) == []
    assert list(parser.feed(b"\n")) == [Output("stdout", b"abc")]


@pytest.mark.parametrize(
    "garbage",
    [
        b"not a frame\n",
        b"o !!!notbase64!!!\n",
        b"z " + base64.b64encode(b"{}") + b"\n",  # unknown tag
        b"x " + base64.b64encode(b"{not json") + b"\n",
        b"x " + base64.b64encode(b'{"signal": 1}') + b"\n",  # missing exitCode
        b"f " + base64.b64encode(b'{"path": "a"}') + b"\n",  # missing size
        b"s " + base64.b64encode(b"[1, 2]") + b"\n",  # wrong JSON shape
        b"oo\n",
    ],
)
def test_garbage_is_counted_and_dropped(garbage: bytes) -> None:
    frames, parser = parse(garbage + encode_frame("o", b"after"))
    assert frames == [Output("stdout", b"after")]
    assert parser.bad_lines == 1


def test_blank_lines_are_ignored_quietly() -> None:
    frames, parser = parse(b"\n\n" + encode_frame("o", b"x"))
    assert frames == [Output("stdout", b"x")]
    assert parser.bad_lines == 0


def test_overlong_line_is_dropped_and_parser_resyncs() -> None:
    parser = FrameParser()
    frames = list(parser.feed(b"o " + b"A" * (MAX_LINE + 10)))
    frames += list(parser.feed(b"B" * (MAX_LINE * 2)))  # still the same endless line
    frames += list(parser.feed(b"tail of the endless line\n" + encode_frame("o", b"next")))
    assert frames == [Output("stdout", b"next")]
    assert parser.bad_lines >= 1
    assert len(parser._buf) < MAX_LINE


def test_skipped_entries_are_bounded() -> None:
    entries = [{"path": "p" * 5000, "reason": "r" * 500}] * 2000
    frames, _ = parse(encode_frame("k", j(entries)))
    (skipped,) = frames
    assert isinstance(skipped, Skipped)
    assert len(skipped.entries) == 1000
    assert len(skipped.entries[0][0]) == 1024 and len(skipped.entries[0][1]) == 200


def test_bundle_round_trip() -> None:
    raw = encode_bundle(
        runtime="shell",
        entrypoint="main.sh",
        files={"main.sh": b"echo hi\n"},
        args=["$(id)", "a b"],
        env={"K": "V"},
        input_data=b"\x00in",
        max_files=5,
        max_bytes=10,
        linger_seconds=2,
    )
    doc = json.loads(raw)
    assert doc["v"] == 1 and doc["runtime"] == "shell" and doc["entrypoint"] == "main.sh"
    assert base64.b64decode(doc["files"]["main.sh"]) == b"echo hi\n"
    assert doc["args"] == ["$(id)", "a b"] and doc["env"] == {"K": "V"}
    assert base64.b64decode(doc["input"]) == b"\x00in"
    assert doc["outputs"] == {"max_files": 5, "max_bytes": 10} and doc["linger_seconds"] == 2
