"""Output capture keeps head + tail with bounded memory; artifact collection trusts nothing the runner says."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.services.execution.capture import (
    CHUNK,
    ArtifactCollector,
    CollectedArtifact,
    StreamCapture,
    safe_artifact_path,
)

CollectorFactory = Callable[..., ArtifactCollector]


def marker(dropped: int) -> bytes:
    return f"\n[... {dropped} bytes truncated ...]\n".encode()


def reference(data: bytes, cap: int) -> bytes:
    """What a capture of ``cap`` must store for ``data``: everything, or head + marker + tail."""
    if len(data) <= cap:
        return data
    head, tail = cap // 2, cap - cap // 2
    return data[:head] + marker(len(data) - cap) + (data[-tail:] if tail else b"")


def feed(cap: int, chunks: list[bytes]) -> tuple[StreamCapture, bytes]:
    capture = StreamCapture(cap)
    for chunk in chunks:
        capture.add(chunk)
    return capture, b"".join(capture.finish())


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos = [], 0
    for n in sizes:
        out.append(data[pos : pos + n])
        pos += n
    out.append(data[pos:])
    return out


def buffered(capture: StreamCapture) -> int:
    """Bytes the capture holds right now: the pending head plus every piece of the tail ring."""
    return len(capture.pending) + sum(len(piece) for piece in capture._tail)


# --- StreamCapture: exact contents -------------------------------------------------------------------


@pytest.mark.parametrize("total", [0, 1, 99, 100])
def test_everything_is_kept_up_to_the_cap(total: int) -> None:
    data = bytes(range(256))[:total] if total <= 256 else os.urandom(total)
    capture, stored = feed(100, [data[i : i + 7] for i in range(0, len(data), 7)])
    assert stored == data
    assert capture.total == total
    assert capture.kept == total
    assert capture.dropped == 0
    assert b"truncated" not in stored


def test_over_the_cap_keeps_exactly_head_and_tail_and_a_marker() -> None:
    data = os.urandom(1000)
    capture, stored = feed(101, [data[i : i + 13] for i in range(0, len(data), 13)])
    assert capture.head_limit == 50
    assert capture.tail_limit == 51
    assert capture.total == 1000
    assert capture.kept == 101
    assert capture.dropped == 899
    assert stored == data[:50] + marker(899) + data[-51:]
    assert stored.count(b"[... 899 bytes truncated ...]") == 1


def test_one_byte_over_the_cap_drops_one_byte() -> None:
    data = bytes(range(101))
    capture, stored = feed(100, [data])
    assert capture.dropped == 1
    assert stored == data[:50] + marker(1) + data[-50:]


def test_marker_is_on_its_own_line() -> None:
    _, stored = feed(10, [b"a" * 5 + b"b" * 100 + b"c" * 5])
    assert stored == b"aaaaa\n[... 100 bytes truncated ...]\nccccc"


@pytest.mark.parametrize("cap", [0, 1, 2, 3])
def test_tiny_caps(cap: int) -> None:
    data = b"0123456789"
    _, stored = feed(cap, [data[:3], data[3:]])
    assert stored == reference(data, cap)


def test_single_huge_chunk() -> None:
    data = os.urandom(3 * CHUNK + 17)
    capture, stored = feed(2 * CHUNK + 1, [data])
    assert stored == reference(data, 2 * CHUNK + 1)
    assert capture.kept == 2 * CHUNK + 1


@pytest.mark.parametrize(
    "pattern",
    [
        [1],
        [2, 3],
        [7],
        [49, 1, 50],
        [50],
        [51],
        [100],
        [101],
        [1000],
        [1, 1000, 1],
        [13, 1, 1, 200, 3],
        [4096],
        [4097, 1],
        [5000, 1, 1, 1],
    ],
)
def test_tail_is_the_true_last_bytes_for_chunk_patterns(pattern: list[int]) -> None:
    data = os.urandom(20_000)
    sizes: list[int] = []
    while sum(sizes) < len(data):
        sizes += pattern
    chunks = [c for c in split(data, sizes) if c]
    assert b"".join(chunks) == data
    for cap in (0, 1, 100, 101, 4096, 10_000, 19_999, 20_000, 20_001):
        capture, stored = feed(cap, chunks)
        assert stored == reference(data, cap), (pattern, cap)
        assert capture.dropped == max(0, len(data) - cap)


@settings(max_examples=300, deadline=None)
@given(
    cap=st.integers(min_value=0, max_value=300),
    sizes=st.lists(st.integers(min_value=0, max_value=200), max_size=40),
    drain=st.lists(st.booleans(), max_size=40),
    seed=st.binary(min_size=1, max_size=1),
)
def test_random_chunking_matches_naive_reference(cap: int, sizes: list[int], drain: list[bool], seed: bytes) -> None:
    total = sum(sizes)
    data = hashlib.shake_256(seed).digest(total) if total else b""
    capture = StreamCapture(cap)
    stored = bytearray()
    fed = 0
    for i, chunk in enumerate(split(data, sizes)):
        capture.add(chunk)
        fed += len(chunk)
        if i < len(drain) and drain[i]:
            stored += b"".join(capture.take_pending())
        assert capture.total == fed
        assert buffered(capture) <= cap + len(chunk) + 4096
    stored += b"".join(capture.finish())
    assert bytes(stored) == reference(data, cap)
    assert capture.kept == min(len(data), cap)
    assert capture.dropped == max(0, len(data) - cap)


# --- StreamCapture: draining the head ----------------------------------------------------------------


def test_take_pending_drains_the_head() -> None:
    capture = StreamCapture(20)
    capture.add(b"abcdef")
    assert capture.take_pending() == [b"abcdef"]
    assert capture.take_pending() == []
    capture.add(b"ghijklmnopqrstuvwxyz")
    assert capture.take_pending() == [b"ghij"]  # the head is 10 bytes; the rest goes to the tail
    assert capture.take_pending() == []
    capture.add(b"0123456789")
    assert capture.take_pending() == []
    # finish does not repeat what was already taken
    assert b"".join(capture.finish()) == marker(16) + b"0123456789"


def test_take_pending_splits_into_chunks() -> None:
    data = os.urandom(3 * CHUNK + 5)
    capture = StreamCapture(len(data) * 2)
    capture.add(data)
    parts = capture.take_pending()
    assert [len(p) for p in parts] == [CHUNK, CHUNK, CHUNK, 5]
    assert b"".join(parts) == data
    assert all(isinstance(p, bytes) for p in parts)


def test_finish_splits_the_tail_into_chunks() -> None:
    cap = 4 * CHUNK
    data = os.urandom(cap * 3)
    capture = StreamCapture(cap)
    capture.add(data)
    capture.take_pending()
    parts = capture.finish()
    assert parts[0] == marker(2 * cap)
    assert all(len(p) <= CHUNK for p in parts[1:])
    assert b"".join(parts[1:]) == data[-2 * CHUNK :]


# --- StreamCapture: memory ---------------------------------------------------------------------------


def test_memory_stays_bounded_over_50_mb() -> None:
    cap, chunk_size = 1024 * 1024, 8192
    capture = StreamCapture(cap)
    block = os.urandom(chunk_size * 64)
    total = 50 * 1024 * 1024
    fed, peak, last = 0, 0, b""
    while fed < total:
        offset = (fed // chunk_size) % 64 * chunk_size
        last = block[offset : offset + chunk_size]
        capture.add(last)
        fed += chunk_size
        held = buffered(capture)
        peak = max(peak, held)
        assert held <= cap + chunk_size, f"holding {held} bytes after {fed}"
        assert capture._tail_len == sum(len(p) for p in capture._tail)
    assert peak > cap // 2  # the tail was actually used
    assert capture.total == total
    assert capture.dropped == total - cap
    stored = capture.finish()
    assert stored[-1].endswith(last)


def test_memory_stays_bounded_with_byte_sized_writes() -> None:
    """A script writing one byte at a time must not turn the tail ring into millions of small objects."""
    cap = 64 * 1024
    capture = StreamCapture(cap)
    for i in range(cap * 4):
        capture.add(bytes([i % 251]))
    assert buffered(capture) <= cap + 4096 + 1
    assert len(capture._tail) <= (cap // 2) // 4096 + 2
    expected = bytes(i % 251 for i in range(cap * 4))
    assert b"".join(capture.finish()) == reference(expected, cap)


def test_memory_bound_with_one_huge_chunk_then_small_ones() -> None:
    cap = 1000
    capture = StreamCapture(cap)
    capture.add(b"x" * 100_000)
    for _ in range(2000):
        capture.add(b"y")
        assert buffered(capture) <= cap + 100_000
    assert buffered(capture) <= cap + 4096
    stored = b"".join(capture.finish())
    assert stored == b"x" * 500 + marker(100_000 + 2000 - cap) + b"y" * 500


# --- safe_artifact_path ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "report.pdf",
        "a/b/c.txt",
        ".hidden",
        "..dots-in-name",
        "a..b",
        "dir/...",
        "ünïcødé/名前.txt",
        "with space/and-dash_underscore",
        "x" * 1024,
    ],
)
def test_safe_paths_pass_unchanged(path: str) -> None:
    assert safe_artifact_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "/abs/olute",
        "..",
        "../escape",
        "a/../../escape",
        "a/..",
        ".",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        "/",
        "//server/share",
        "a\x00b",
        "\x00",
        "a\\b",
        "..\\escape",
        "C:\\Windows",
        "x" * 1025,
    ],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    assert safe_artifact_path(path) is None


# --- ArtifactCollector -------------------------------------------------------------------------------


@pytest.fixture
def make_collector() -> Iterator[CollectorFactory]:
    made: list[ArtifactCollector] = []

    def factory(max_files: int = 10, max_bytes: int = 1_000_000) -> ArtifactCollector:
        collector = ArtifactCollector(max_files, max_bytes)
        made.append(collector)
        return collector

    yield factory
    for collector in made:
        collector.close()


def read(art: CollectedArtifact) -> bytes:
    art.file.seek(0)
    return art.file.read()


def add(collector: ArtifactCollector, path: str, content: bytes, *, size: int | None = None, piece: int = 3) -> None:
    collector.begin(path, len(content) if size is None else size)
    for i in range(0, len(content), piece):
        collector.data(content[i : i + piece])


def test_files_are_collected_with_size_hash_and_type(make_collector: CollectorFactory) -> None:
    c = make_collector()
    add(c, "out/report.json", b'{"ok": true}')
    add(c, "data.bin", bytes(range(256)) * 10, piece=1000)
    add(c, "empty.txt", b"")
    done = c.finish()
    assert [a.path for a in done] == ["out/report.json", "data.bin", "empty.txt"]
    assert c.skipped == []
    report, blob, empty = done
    assert read(report) == b'{"ok": true}'
    assert report.size == 12
    assert report.sha256 == hashlib.sha256(b'{"ok": true}').hexdigest()
    assert report.content_type == "application/json"
    assert read(blob) == bytes(range(256)) * 10
    assert blob.sha256 == hashlib.sha256(bytes(range(256)) * 10).hexdigest()
    assert blob.content_type == "application/octet-stream"
    assert empty.size == 0
    assert empty.sha256 == hashlib.sha256(b"").hexdigest()
    assert empty.content_type == "text/plain"


def test_finished_files_are_rewound(make_collector: CollectorFactory) -> None:
    c = make_collector()
    add(c, "a.txt", b"hello")
    (art,) = c.finish()
    assert art.file.read() == b"hello"


def test_data_beyond_the_declared_size_is_dropped(make_collector: CollectorFactory) -> None:
    c = make_collector()
    c.begin("a.txt", 5)
    c.data(b"hel")
    c.data(b"lo world")
    c.data(b"and more")
    (art,) = c.finish()
    assert read(art) == b"hello"
    assert art.size == 5
    assert art.sha256 == hashlib.sha256(b"hello").hexdigest()


def test_short_data_is_kept_with_its_real_size(make_collector: CollectorFactory) -> None:
    c = make_collector()
    add(c, "a.txt", b"abc", size=10)
    (art,) = c.finish()
    assert art.size == 3
    assert art.sha256 == hashlib.sha256(b"abc").hexdigest()


def test_data_without_a_file_is_ignored(make_collector: CollectorFactory) -> None:
    c = make_collector()
    c.data(b"orphan")
    assert c.finish() == []


def test_file_count_cap(make_collector: CollectorFactory) -> None:
    c = make_collector(max_files=2)
    for name in ("a", "b", "c", "d"):
        add(c, name, name.encode() * 4)
    done = c.finish()
    assert [a.path for a in done] == ["a", "b"]
    assert c.skipped == [("c", "too many files"), ("d", "too many files")]
    assert [read(a) for a in done] == [b"aaaa", b"bbbb"]  # data sent for skipped files went nowhere


def test_zero_files_allowed(make_collector: CollectorFactory) -> None:
    c = make_collector(max_files=0)
    add(c, "a", b"x")
    assert c.finish() == []
    assert c.skipped == [("a", "too many files")]


def test_total_bytes_cap(make_collector: CollectorFactory) -> None:
    c = make_collector(max_bytes=10)
    add(c, "a", b"123456")
    add(c, "b", b"12345")  # 6 + 5 > 10
    add(c, "c", b"1234")  # 6 + 4 == 10 fits
    add(c, "d", b"")  # an empty file always fits
    add(c, "e", b"1")
    done = c.finish()
    assert [a.path for a in done] == ["a", "c", "d"]
    assert c.skipped == [("b", "too large"), ("e", "too large")]
    assert sum(a.size for a in done) <= 10


def test_a_lying_size_cannot_exceed_the_byte_cap(make_collector: CollectorFactory) -> None:
    c = make_collector(max_bytes=10)
    c.begin("a", 4)
    c.data(b"x" * 1000)
    c.begin("b", 6)
    c.data(b"y" * 1000)
    c.begin("c", 1)
    c.data(b"z")
    done = c.finish()
    assert [(a.path, a.size) for a in done] == [("a", 4), ("b", 6)]
    assert c.skipped == [("c", "too large")]


def test_negative_size_is_refused(make_collector: CollectorFactory) -> None:
    c = make_collector()
    c.begin("a", -1)
    c.data(b"x")
    assert c.finish() == []
    assert c.skipped == [("a", "too large")]


def test_unsafe_and_duplicate_paths_are_skipped(make_collector: CollectorFactory) -> None:
    c = make_collector()
    add(c, "../etc/passwd", b"root")
    add(c, "/abs", b"x")
    add(c, "ok.txt", b"first")
    add(c, "ok.txt", b"second")
    add(c, "bad\\path", b"x")
    add(c, "y" * 5000, b"x")
    done = c.finish()
    assert [a.path for a in done] == ["ok.txt"]
    assert read(done[0]) == b"first"
    assert c.skipped[:5] == [
        ("../etc/passwd", "unsafe path"),
        ("/abs", "unsafe path"),
        ("ok.txt", "duplicate"),
        ("bad\\path", "unsafe path"),
        ("y" * 200, "unsafe path"),  # the untrusted name is cut before it is recorded
    ]


def test_big_files_are_spooled_to_disk(make_collector: CollectorFactory) -> None:
    c = make_collector(max_bytes=10 * 1024 * 1024)
    content = os.urandom(3 * 1024 * 1024)
    add(c, "big.bin", content, piece=64 * 1024)
    (art,) = c.finish()
    assert isinstance(art.file, tempfile.SpooledTemporaryFile)
    assert getattr(art.file, "_rolled")  # noqa: B009 - past max_size the spool is a real file, not memory
    assert art.sha256 == hashlib.sha256(content).hexdigest()
    assert read(art) == content


def test_close_closes_every_file(make_collector: CollectorFactory) -> None:
    c = make_collector()
    add(c, "a", b"1")
    add(c, "b", b"2")
    done = c.finish()
    c.close()
    assert all(a.file.closed for a in done)


@settings(max_examples=200, deadline=None)
@given(
    files=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d/e", "../x", ""]), st.binary(max_size=50), st.integers(-5, 60)),
        max_size=12,
    ),
    max_files=st.integers(0, 5),
    max_bytes=st.integers(0, 200),
)
def test_collector_invariants(files: list[tuple[str, bytes, int]], max_files: int, max_bytes: int) -> None:
    c = ArtifactCollector(max_files, max_bytes)
    try:
        for path, content, declared in files:
            c.begin(path, declared)
            c.data(content)
        done = c.finish()
        assert len(done) <= max_files
        assert sum(a.size for a in done) <= max_bytes
        assert len({a.path for a in done}) == len(done)
        assert len(done) + len(c.skipped) == len(files)
        for art in done:
            data = read(art)
            assert len(data) == art.size
            assert art.sha256 == hashlib.sha256(data).hexdigest()
            assert safe_artifact_path(art.path) == art.path
    finally:
        c.close()
