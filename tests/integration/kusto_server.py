"""A scripted Data Explorer endpoint on 127.0.0.1, for the real Kusto SDK to talk to.

It implements just enough of the Kusto REST API for `azure-kusto-ingest` and
`azure-kusto-data`, and records what arrives:

- `GET /v1/rest/auth/metadata`: 404, as a proxy without it answers; the SDK then uses the
  public cloud's defaults (token scope `https://kusto.kusto.windows.net/.default`) without
  asking anyone else.
- `POST /v1/rest/ingest/{database}/{table}?streamFormat=...&mappingName=...`: streaming
  ingestion. The body (gzip when `Content-Encoding: gzip`) is decoded and recorded.
- `POST /v1/rest/mgmt`: a management command (`{"db": ..., "csl": ...}`), recorded. A
  `.purge` answers as a scheduled purge does (one row with a new `OperationId`), and
  `.show purges <OperationId>` with the state scripted in `purge_states`.
- `POST /v2/rest/query`: a query, recorded; answered from `query_replies`.

Each endpoint answers 200 with a one-table v1 response unless a test scripts a failure.
A threaded server, so synchronous callers (the CLI) and worker threads (the sink) can use it
alike. `StaticTokenCredential` stands in for `DefaultAzureCredential`: no identity endpoint
is ever asked for a token.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken

__all__ = [
    "IngestRequest",
    "KustoServer",
    "MgmtRequest",
    "Reply",
    "StaticTokenCredential",
    "kusto_error",
    "purge_operation_id",
    "run_kusto_server",
]

INGEST_PREFIX = "/v1/rest/ingest/"
MGMT_PATH = "/v1/rest/mgmt"
QUERY_PATH = "/v2/rest/query"
METADATA_PATH = "/v1/rest/auth/metadata"


@dataclass(frozen=True)
class Reply:
    """A scripted answer: status and JSON body (or text)."""

    status: int
    body: Any


def kusto_error(status: int, code: str, message: str, *, permanent: bool) -> Reply:
    """The service's error shape (a OneApiError), which the SDK reads `@permanent` from."""
    return Reply(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "@type": f"Kusto.Test.{code}Exception",
                "@message": message,
                "@permanent": permanent,
            }
        },
    )


def v1_table(columns: dict[str, str], *rows: list[Any]) -> dict[str, Any]:
    """A v1 REST response with one table."""
    return {
        "Tables": [
            {
                "TableName": "Table_0",
                "Columns": [
                    {"ColumnName": name, "DataType": kind.capitalize(), "ColumnType": kind}
                    for name, kind in columns.items()
                ],
                "Rows": list(rows),
            }
        ]
    }


def purge_operation_id(n: int) -> str:
    """The `OperationId` the server gives the `n`th purge it schedules (from 1)."""
    return f"c9651d74-3b80-4183-90bb-{n:012d}"


_SHOW_PURGE = re.compile(r"\.show\s+purges\s+(\S+)")
_PURGE = re.compile(r"\.purge\s+(?:table|materialized-view)\s+(\S+)\s+records\s+in\s+database\s+(\S+)")


@dataclass(frozen=True)
class IngestRequest:
    """One streaming-ingest request as received."""

    database: str
    table: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    """The body as it came over the wire."""
    body: bytes
    """Decompressed (when `Content-Encoding: gzip`)."""

    @property
    def lines(self) -> list[dict[str, Any]]:
        """The body's JSON objects, one per non-empty line."""
        return [json.loads(line) for line in self.body.decode("utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class MgmtRequest:
    """One management command as received."""

    database: str
    command: str
    headers: dict[str, str]


@dataclass(frozen=True)
class QueryRequest:
    """One query as received: its text and its parameters (CSL literals)."""

    database: str
    query: str
    parameters: dict[str, str]


def v2_frames(columns: dict[str, str], rows: list[list[Any]]) -> list[dict[str, Any]]:
    """A v2 query response: the frames the SDK reads, with one primary result table."""
    return [
        {"FrameType": "DataSetHeader", "IsProgressive": False, "Version": "v2.0"},
        {
            "FrameType": "DataTable",
            "TableId": 0,
            "TableKind": "PrimaryResult",
            "TableName": "PrimaryResult",
            "Columns": [{"ColumnName": name, "ColumnType": kind} for name, kind in columns.items()],
            "Rows": rows,
        },
        {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False},
    ]


@dataclass
class KustoServer:
    """The server's address, what it received, and how it answers."""

    url: str
    ingests: list[IngestRequest] = field(default_factory=list)
    commands: list[MgmtRequest] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    """Every request's method and path, in order."""
    ingest_reply: Reply | None = None
    """Set to answer every streaming ingest with this instead of 200."""
    mgmt_reply: Reply | None = None
    """Set to answer every management command with this instead of 200."""
    fail_command_containing: str | None = None
    """A management command containing this text gets `mgmt_reply` (else every command does)."""
    queries: list[QueryRequest] = field(default_factory=list)
    query_replies: list[Reply] = field(default_factory=list)
    """Answers to the next queries, in order (an empty result table when none is left)."""
    purge_states: dict[str, str] = field(default_factory=dict)
    """`.show purges <OperationId>` answers with this state (`InProgress` for an id not in it)."""

    def reply_to_query(self, request: QueryRequest) -> Reply:
        self.queries.append(request)
        if self.query_replies:
            return self.query_replies.pop(0)
        return Reply(200, v2_frames({"Result": "string"}, []))

    def reply_to_ingest(self, request: IngestRequest) -> Reply:
        self.ingests.append(request)
        if self.ingest_reply is not None:
            return self.ingest_reply
        return Reply(200, v1_table({"ConsumedRecordsCount": "long"}, [len(request.lines)]))

    def reply_to_command(self, request: MgmtRequest) -> Reply:
        self.commands.append(request)
        failing = self.fail_command_containing is None or self.fail_command_containing in request.command
        if self.mgmt_reply is not None and failing:
            return self.mgmt_reply
        if request.command.startswith(".create async"):
            return Reply(200, v1_table({"OperationId": "guid"}, ["7b5d3e3a-0000-4000-8000-000000000001"]))
        shown = _SHOW_PURGE.fullmatch(request.command)
        if shown is not None:
            state = self.purge_states.get(shown[1], "InProgress")
            return Reply(200, v1_table({"OperationId": "guid", "State": "string"}, [shown[1], state]))
        purge = _PURGE.match(request.command)
        if purge is not None:
            purges = sum(1 for command in self.commands if _PURGE.match(command.command))
            return Reply(
                200,
                v1_table(
                    {"OperationId": "guid", "DatabaseName": "string", "TableName": "string", "State": "string"},
                    [purge_operation_id(purges), purge[2], purge[1], "Scheduled"],
                ),
            )
        return Reply(200, v1_table({"Result": "string"}, ["ok"]))


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.kusto.paths.append(f"GET {self.path}")
        self._send(Reply(404, {"error": {"code": "NotFound", "message": "no metadata here"}}))

    def do_POST(self) -> None:
        kusto = self.server.kusto
        kusto.paths.append(f"POST {self.path}")
        url = urlsplit(self.path)
        raw = self._raw_body()
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding", "").lower() == "gzip" else raw
        headers = {name.lower(): value for name, value in self.headers.items()}
        if url.path.startswith(INGEST_PREFIX):
            database, _, table = url.path[len(INGEST_PREFIX) :].partition("/")
            query = {name: values[-1] for name, values in parse_qs(url.query).items()}
            self._send(kusto.reply_to_ingest(IngestRequest(database, table, query, headers, raw, body)))
        elif url.path == MGMT_PATH:
            payload = json.loads(body)
            self._send(kusto.reply_to_command(MgmtRequest(payload["db"], payload["csl"], headers)))
        elif url.path == QUERY_PATH:
            payload = json.loads(body)
            properties = payload.get("properties") or {}
            if isinstance(properties, str):
                properties = json.loads(properties)
            parameters = {str(k): str(v) for k, v in (properties.get("Parameters") or {}).items()}
            self._send(kusto.reply_to_query(QueryRequest(payload["db"], payload["csl"], parameters)))
        else:
            self._send(Reply(404, {"error": {"code": "NotFound", "message": url.path}}))

    def _raw_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._chunked()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0], 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, reply: Reply) -> None:
        body = reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/plain" if isinstance(reply.body, str) else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorded requests are the log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kusto: KustoServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.kusto = kusto


@contextmanager
def run_kusto_server() -> Iterator[KustoServer]:
    """Serve on a free loopback port in a background thread until the block ends."""
    server = _Server(KustoServer(url=""))
    host, port = server.server_address[:2]
    server.kusto.url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="kusto-server", daemon=True)
    thread.start()
    try:
        yield server.kusto
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class StaticTokenCredential:
    """A token credential that hands out one fixed token and records the scopes asked for."""

    def __init__(self, token: str = "static-test-token") -> None:
        self.token = token
        self.scopes: list[str] = []
        self.closed = 0

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)

    def close(self) -> None:
        self.closed += 1
