"""The masker: a secret, its base64 forms and its base64 inside longer encoded data become ***, whatever the
chunk boundaries; short values are left alone; memory stays bounded; the server's log is redacted too."""

from __future__ import annotations

import base64
import logging
import random

import pytest

from controlplane.services.execution.masking import (
    MIN_MASKED_LENGTH,
    RUNAWAY_HOLD,
    LogRedactor,
    Masker,
    mask_bytes,
    patterns_for,
)

SECRET = "s3cr3t/Val+ue?>~"  # its base64 has '+' and '/' (so the URL-safe form differs) and no padding issue


def forms(value: str) -> list[bytes]:
    raw = value.encode()
    std, url = base64.b64encode(raw), base64.urlsafe_b64encode(raw)
    return [raw, std, std.rstrip(b"="), url, url.rstrip(b"=")]


def chunked(patterns: list[bytes], data: bytes, cuts: list[int]) -> bytes:
    masker = Masker(patterns)
    out = b""
    prev = 0
    for cut in [*cuts, len(data)]:
        out += masker.feed(data[prev:cut])
        prev = cut
    return out + masker.finish()


def leaked(out: bytes, value: str) -> list[bytes]:
    return [f for f in forms(value) if f in out]


def test_every_form_of_the_secret_is_masked() -> None:
    pats = patterns_for([SECRET])
    for form in forms(SECRET):
        out = mask_bytes(b"before " + form + b" after", pats)
        assert out == b"before *** after", (form, out)


@pytest.mark.parametrize("value", [SECRET, "abcd", "pässwörd-ü", "x" * 40, "ab=cd=="])
def test_base64_of_the_secret_inside_longer_data_at_every_alignment(value: str) -> None:
    pats = patterns_for([value])
    for prefix in (b"", b"u", b"us", b"user:", b"user:x"):
        for suffix in (b"", b"\n", b"!", b":tail"):
            for enc in (base64.b64encode, base64.urlsafe_b64encode):
                blob = enc(prefix + value.encode() + suffix)
                out = mask_bytes(b"Authorization: Basic " + blob + b"\n", pats)
                if len(value.encode()) < 5:  # too short for the alignment cores (see masking's doc): only
                    continue  # its whole encodings are masked (test_every_form_of_the_secret_is_masked)
                assert b"***" in out, (prefix, suffix, blob, out)
                # what is left of the encoding decodes to nothing that contains the secret
                assert value.encode() not in _decoded_runs(out)


def _decoded_runs(out: bytes) -> bytes:
    found = b""
    for token in out.replace(b"***", b" ").split():
        token = token.split(b":")[-1]
        for enc in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                found += enc(token + b"=" * (-len(token) % 4))
            except ValueError:
                pass
    return found


def test_chunk_boundaries_at_every_offset_give_the_same_result() -> None:
    pats = patterns_for([SECRET, "other-secret-value"])
    data = (
        b"line one " + SECRET.encode() + b"\n" + base64.b64encode(SECRET.encode()) + b" mid "
        b"other-secret-value" + SECRET.encode() + b"x" + base64.b64encode(b"pre " + SECRET.encode() + b"\n")
    )
    whole = mask_bytes(data, pats)
    assert not leaked(whole, SECRET) and b"other-secret-value" not in whole
    for i in range(len(data) + 1):
        assert chunked(pats, data, [i]) == whole, i
    for i in range(0, len(data) + 1, 3):
        for j in range(i, len(data) + 1, 2):
            assert chunked(pats, data, [i, j]) == whole, (i, j)


def test_one_byte_at_a_time() -> None:
    pats = patterns_for([SECRET])
    data = b"x" + SECRET.encode() * 3 + b"y" + base64.b64encode(SECRET.encode()) + b"z"
    assert chunked(pats, data, list(range(1, len(data)))) == mask_bytes(data, pats) == b"x***y***z"


def test_random_chunkings_never_leak() -> None:
    rng = random.Random(7)
    values = ["alpha-secret", "beta-Secret+/=", "gamma"]
    pats = patterns_for(values)
    for _ in range(200):
        parts = [rng.choice([*values, "noise ", "\n", "al", "pha", "=="]) for _ in range(30)]
        data = "".join(parts).encode()
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(6, len(data))))
        out = chunked(pats, data, cuts)
        assert out == mask_bytes(data, pats)
        for v in values:
            assert v.encode() not in out


def test_overlapping_and_touching_secrets_leave_no_piece() -> None:
    pats = patterns_for(["abcdef", "defghi"])
    assert mask_bytes(b"[abcdefghi]", pats) == b"[***]"
    assert mask_bytes(b"[abcdefdefghi]", pats) == b"[***]"
    assert mask_bytes(b"[abcdef defghi]", pats) == b"[*** ***]"


def test_short_values_are_not_masked() -> None:
    short = "x" * (MIN_MASKED_LENGTH - 1)
    assert patterns_for([short, ""]) == []
    masker = Masker(patterns_for([short]))
    assert masker.feed(b"xxx yyy") == b"xxx yyy" and masker.finish() == b""
    assert patterns_for(["x" * MIN_MASKED_LENGTH])


def test_no_secrets_is_a_pass_through() -> None:
    masker = Masker([])
    assert masker.feed(b"anything") == b"anything" and masker.finish() == b""
    assert masker.mask_text("name.txt") == "name.txt"


def test_held_back_bytes_are_bounded() -> None:
    pats = patterns_for([SECRET])
    masker = Masker(pats)
    out = b""
    for _ in range(500):
        out += masker.feed(b"0123456789abcdef" * 64)
    out += masker.finish()
    assert len(out) == 500 * 1024
    assert masker.held_max <= max(len(p) for p in pats) - 1 + 1024


def test_back_to_back_secrets_past_the_runaway_bound_stay_masked() -> None:
    value = "aaaa"  # self-overlapping: a chain of occurrences has no natural end
    pats = patterns_for([value])
    masker = Masker(pats)
    out = b""
    for _ in range(40):
        out += masker.feed(b"a" * 1000)
    out += masker.feed(b"b") + masker.finish()
    assert set(out) <= set(b"*b") and out.endswith(b"b")
    assert masker.held_max <= RUNAWAY_HOLD + 1000


def test_mask_text_for_names() -> None:
    masker = Masker(patterns_for([SECRET]))
    assert masker.mask_text(f"reports/{SECRET}.txt") == "reports/***.txt"


def test_log_redactor_masks_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    redactor = LogRedactor()
    previous = logging.getLogRecordFactory()
    try:
        redactor.add(["log-secret-1234", "abc"])
        logger = logging.getLogger("controlplane.test.redact")
        with caplog.at_level(logging.INFO, logger="controlplane.test.redact"):
            logger.info("value %s and %r", "log-secret-1234", {"k": "log-secret-1234"})
            try:
                raise ValueError("boom log-secret-1234")
            except ValueError:
                logger.exception("failed with %s", base64.b64encode(b"log-secret-1234").decode())
        text = caplog.text
        assert "log-secret-1234" not in text and base64.b64encode(b"log-secret-1234").decode() not in text
        assert text.count("***") >= 4 and "boom ***" in text
        assert "abc" not in redactor.redact("xabcx") or redactor.redact("xabcx") == "xabcx"  # too short to mask
    finally:
        logging.setLogRecordFactory(previous)


def test_artifact_names_and_skipped_entries_are_masked() -> None:
    from controlplane.services.execution.capture import ArtifactCollector

    masker = Masker(patterns_for([SECRET]))
    collector = ArtifactCollector(max_files=1, max_bytes=100, mask=masker.mask_text)
    collector.begin(f"out/{SECRET}.txt", 3)
    collector.data(b"abc")
    collector.begin(f"second-{SECRET}.txt", 1)  # over max_files: skipped, and its name reported
    collector.skipped.append((f"link-{SECRET}", f"symlink to {SECRET}"))  # the runner's own skipped frame
    done = collector.finish()
    assert [a.path for a in done] == ["out/***.txt"]
    assert collector.skipped == [("second-***.txt", "too many files"), ("link-***", "symlink to ***")]
    collector.close()
