"""Journald-friendly logging: fields, one line per event, redaction, rate limiting."""

from __future__ import annotations

import io
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgwd.daemon.logging import (
    AwsEvent,
    RateLimitedLogger,
    configure_logging,
    forget_secrets,
    register_secret,
    syslog_priority,
    tunnel_logger,
)
from cgwd.secret import Secret

PSK = "Rx7.hunter2_secretPSK"


@pytest.fixture(autouse=True)
def restore_cgwd_logger() -> Iterator[None]:
    """configure_logging changes the "cgwd" logger process-wide: put it back, so later
    tests (caplog relies on propagation) see the usual logging setup."""
    logger = logging.getLogger("cgwd")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        for handler in logger.handlers:
            if handler not in saved[0]:
                logger.removeHandler(handler)
                handler.close()
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
        forget_secrets()


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging(logging.DEBUG, stream=stream, environ={})
    try:
        yield stream
    finally:
        logging.getLogger("cgwd").removeHandler(handler)
        forget_secrets()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_tunnel_and_event_in_one_line(text_log: io.StringIO) -> None:
    log = tunnel_logger("vpc01-t1")
    log.event(logging.WARNING, AwsEvent.DPD_TIMEOUT, "DPD timed out after %d retransmits", 3)
    log.info("first line\nsecond line")
    out = lines(text_log)
    assert len(out) == 2
    assert out[0].endswith(" WARNING [vpc01-t1] dpd_timeout: DPD timed out after 3 retransmits")
    assert out[1].endswith(" INFO [vpc01-t1] first line second line")


def test_aws_event_names() -> None:
    assert {e.value for e in AwsEvent} == {
        "auth_failed",
        "no_proposal_chosen",
        "ts_unacceptable",
        "dpd_timeout",
        "child_rekey_collision",
        "redundant_child_deleted",
        "ike_half_open_timeout",
        "child_create_failed",
    }


def test_secrets_never_reach_the_output(text_log: io.StringIO) -> None:
    register_secret(Secret(PSK))
    log = logging.getLogger("cgwd.test")
    log.warning("psk object %s %r", Secret(PSK), Secret(PSK))
    log.warning("revealed %s", Secret(PSK).reveal())
    log.warning("in text: psk=" + PSK)
    log.warning("as hex %s", PSK.encode().hex())
    log.warning("mapping %(k)s", {"k": PSK})
    tunnel_logger(PSK).info("tunnel field")
    try:
        raise ValueError(f"bad key {PSK}")
    except ValueError:
        log.exception("failure")
    log.warning("bad format %d", "x")  # must not raise or vanish
    out = text_log.getvalue()
    assert PSK not in out and PSK.encode().hex() not in out
    assert out.count("<redacted>") >= 8
    assert "bad format" in out and "Traceback" in out


def test_journal_native_fields(tmp_path: Path) -> None:
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(tmp_path / "journal"))
    journal.settimeout(2)
    stderr = open(tmp_path / "stderr", "w")  # noqa: SIM115 - its inode plays JOURNAL_STREAM
    info = os.fstat(stderr.fileno())
    env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
    handler = configure_logging(
        logging.INFO, stream=stderr, environ=env, journal_socket=str(tmp_path / "journal")
    )
    try:
        register_secret(Secret(PSK))
        tunnel_logger("vpc01-t2").event(logging.ERROR, AwsEvent.AUTH_FAILED, "peer said %s", PSK)
        fields = journal.recv(65536).split(b"\n")
        logging.getLogger("cgwd.x").info("two\nlines")
        second = journal.recv(65536)
    finally:
        logging.getLogger("cgwd").removeHandler(handler)
        handler.close()
        journal.close()
        stderr.close()
        forget_secrets()
    assert b"MESSAGE=[vpc01-t2] auth_failed: peer said <redacted>" in fields
    assert b"PRIORITY=3" in fields
    assert b"CGWD_TUNNEL=vpc01-t2" in fields
    assert b"CGWD_EVENT=auth_failed" in fields
    assert b"SYSLOG_IDENTIFIER=cgwd" in fields
    assert b"MESSAGE=two lines\n" in second  # folded to one line
    assert (tmp_path / "stderr").read_text() == ""


def test_not_under_journald_means_text() -> None:
    stream = io.StringIO()
    handler = configure_logging(logging.INFO, stream=stream, environ={"JOURNAL_STREAM": "1:2"})
    try:
        assert isinstance(handler, logging.StreamHandler)
    finally:
        logging.getLogger("cgwd").removeHandler(handler)


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
        (5, 7),
    ],
)
def test_syslog_priority(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority


def test_rate_limited_logger(text_log: io.StringIO) -> None:
    now = [100.0]
    limiter = RateLimitedLogger(
        logging.getLogger("cgwd.drops"), interval=10, burst=2, clock=lambda: now[0]
    )
    key = ("vpc01-t1", "replay")
    results = [limiter.log(key, logging.WARNING, "replayed packet seq %d", n) for n in range(5)]
    assert results == [True, True, False, False, False]
    assert limiter.suppressed(key) == 3
    assert limiter.log("other", logging.WARNING, "other key")  # independent budget
    now[0] += 10
    assert limiter.log(key, logging.WARNING, "replayed packet seq %d", 9)
    out = lines(text_log)
    assert len(out) == 4
    assert out[-1].endswith("replayed packet seq 9 (3 similar suppressed)")


def test_rate_limiter_forgets_old_keys() -> None:
    limiter = RateLimitedLogger(
        logging.getLogger("cgwd.null"), burst=1, max_keys=3, clock=lambda: 0.0
    )
    assert limiter.log("k0", logging.DEBUG, "x")
    assert not limiter.log("k0", logging.DEBUG, "x")
    for key in ("k1", "k2", "k3"):
        limiter.log(key, logging.DEBUG, "x")
    # k0 was the least recently used of four keys: forgotten, so it starts afresh.
    assert limiter.suppressed("k0") == 0
    assert limiter.log("k0", logging.DEBUG, "x")
