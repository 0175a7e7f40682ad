"""Fixtures every test can use, wherever it lives: the emulators, and the recorded spans.

A plugin rather than a conftest (`-p tests.fixtures` in pyproject's pytest `addopts`): a
conftest only reaches the tests below it, and the adapters' tests live beside the adapters
under `shared/adapters/`. The emulator fixtures start their emulator on first use only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.integration.azurite import AzuriteMissingError, find_azurite_table, run_azurite_table
from tests.integration.cosmosdb_server import CosmosDBServerMissingError, find_cosmosdb_server, run_cosmosdb_server
from tests.spans import RecordedSpans, recorded_spans

T = TypeVar("T")


def _installed(find: Callable[[], T], missing: type[Exception], emulator: str, suite: str) -> T:
    """`find()`, or skip the test saying what is missing; on CI (`CI=true`) fail it instead,
    since a silently skipped suite there would look like a passing one."""
    try:
        return find()
    except missing as exc:
        reason = f"!!! {emulator} NOT AVAILABLE, {suite} tests NOT RUN: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def azurite_table_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A connection string to an Azurite Table emulator started for this test session.

    Skips the test when Node.js or Azurite is not installed, but fails it on CI (`CI=true`),
    where a silently skipped storage suite would look like a passing one.
    """
    launcher = _installed(find_azurite_table, AzuriteMissingError, "AZURITE", "Table Storage")
    with run_azurite_table(launcher, tmp_path_factory.mktemp("azurite")) as conn_str:
        yield conn_str


@pytest.fixture(scope="session")
def cosmosdb_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A connection string to a cosmosdb-server (Cosmos DB emulator) started for this test session.

    HTTPS with a self-signed certificate: clients must turn TLS verification off
    (`CLOUDSCALE_COSMOS_VERIFY_TLS=false`). Skips when Node.js or the package is not installed,
    but fails on CI (`CI=true`), like the Azurite fixture.
    """
    cli = _installed(find_cosmosdb_server, CosmosDBServerMissingError, "COSMOSDB-SERVER", "Cosmos DB")
    with run_cosmosdb_server(cli, tmp_path_factory.mktemp("cosmosdb-server")) as conn_str:
        yield conn_str


@pytest.fixture
def spans() -> RecordedSpans:
    """Spans recorded by the process-wide SDK tracer provider during this test."""
    return recorded_spans()
