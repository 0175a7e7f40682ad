"""`cloudscale tenants` and `cloudscale keys` against the real embedded registry file, as an operator runs them.

Keys printed by the CLI are checked the way ingest checks them: by a `WriteKeyAuthenticator`
over a registry opened on the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloudscale_local.cli.main import main
from shared.adapters.tenants.embedded_registry import REGISTRY_FILE, EmbeddedTenantRegistry
from shared.domain.write_keys import Tenant, WriteKey, hash_key, parse_key
from shared.write_key_auth import KeyRejectedError, Producer, WriteKeyAuthenticator

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(tmp_path: Path) -> Invoke:
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        environment = {
            "CLOUDSCALE_BACKEND": "embedded",
            "CLOUDSCALE_DATA_DIR": str(tmp_path),
            "CLOUDSCALE_WRITE_KEY_CACHE_SECONDS": "7",
            **(env or {}),
        }
        result = runner.invoke(main, list(args), env=environment)
        # Failures must be messages, never tracebacks: anything but a clean exit is a bug.
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return run


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def refused(result: Result) -> str:
    """The one-line error of a command that failed."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def create_key(invoke: Invoke, *args: str) -> str:
    return ok(invoke("keys", "create", "--tenant", "acme", "--quiet", *args)).stdout.strip()


def stored(tmp_path: Path) -> tuple[list[Tenant], list[WriteKey]]:
    async def read() -> tuple[list[Tenant], list[WriteKey]]:
        registry = EmbeddedTenantRegistry(tmp_path / REGISTRY_FILE)
        try:
            found = list(await registry.list_tenants())
            return found, [key for tenant in found for key in await registry.list_keys(tenant.tenant_id)]
        finally:
            await registry.close()

    return asyncio.run(read())


def authenticate(tmp_path: Path, key: str) -> Producer:
    async def check() -> Producer:
        registry = EmbeddedTenantRegistry(tmp_path / REGISTRY_FILE)
        authenticator = WriteKeyAuthenticator(registry, cache_seconds=7)
        try:
            return await authenticator.authenticate(key)
        finally:
            await authenticator.close()
            await registry.close()

    return asyncio.run(check())


def test_a_created_tenant_is_listed_and_shown_with_its_quota(invoke: Invoke, tmp_path: Path) -> None:
    created = ok(invoke("tenants", "create", "acme"))
    ok(invoke("tenants", "create", "beta", "--events-per-minute", "1200"))

    assert "Created tenant 'acme', quota 60000 events/min (default)." in created.stdout
    listed = ok(invoke("tenants", "list")).stdout.splitlines()
    assert listed[0].split() == ["TENANT", "STATUS", "QUOTA", "LIVE", "KEYS", "CREATED"]
    assert listed[1].startswith("acme    active  60000 events/min (default)  0 server, 0 browser")
    assert listed[2].startswith("beta    active  1200 events/min ")
    [acme, beta] = stored(tmp_path)[0]
    assert (acme.tenant_id, acme.events_per_minute, beta.events_per_minute) == ("acme", None, 1200)
    shown = ok(invoke("tenants", "show", "beta")).stdout
    assert "Status:   active" in shown
    assert "Quota:    1200 events/min" in shown
    assert "Keys:     none" in shown


def test_a_created_key_is_printed_once_alone_and_verifies_against_the_stored_hash(
    invoke: Invoke, tmp_path: Path
) -> None:
    ok(invoke("tenants", "create", "acme"))

    result = ok(invoke("keys", "create", "--tenant", "acme", "--label", "checkout service"))

    key = result.stdout.strip()
    assert result.stdout == key + "\n"  # stdout is the key alone: KEY=$(cloudscale keys create ...)
    parsed = parse_key(key)
    assert parsed is not None
    assert parsed.kind == "server"
    assert "shown once" in result.stderr
    assert parsed.key_id in result.stderr
    assert key not in result.stderr
    [record] = stored(tmp_path)[1]
    assert (record.key_id, record.key_hash, record.label) == (parsed.key_id, hash_key(key), "checkout service")
    assert authenticate(tmp_path, key) == Producer("acme", parsed.key_id, "server", (), None)


def test_quiet_prints_the_key_only(invoke: Invoke) -> None:
    ok(invoke("tenants", "create", "acme"))

    result = ok(invoke("keys", "create", "--tenant", "acme", "--quiet"))

    assert result.stderr == ""
    assert parse_key(result.stdout.strip()) is not None


def test_lists_and_show_never_print_a_key(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("tenants", "create", "acme"))
    server = create_key(invoke)
    browser = create_key(invoke, "--kind", "browser", "--origin", "https://Shop.Example:443", "--label", "storefront")
    server_id, browser_id = (parse_key(key).key_id for key in (server, browser))  # type: ignore[union-attr]

    outputs = [ok(invoke(*args)).output for args in (("keys", "list", "--tenant", "acme"), ("tenants", "show", "acme"))]

    for output in outputs:
        assert server_id in output
        assert browser_id in output
        assert "https://shop.example" in output
        assert "storefront" in output
        for key in (server, browser):
            assert key not in output
            assert key[22:] not in output  # nor the secret part
    assert "1 server, 1 browser" in ok(invoke("tenants", "list")).stdout


def test_a_third_live_key_is_refused_with_the_reason_until_one_is_revoked(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("tenants", "create", "acme"))
    old, new = create_key(invoke), create_key(invoke)

    third = invoke("keys", "create", "--tenant", "acme")

    assert refused(third) == "Error: tenant 'acme' has 2 live server keys, the most it may hold; revoke one first"
    assert third.stdout == ""
    assert len(stored(tmp_path)[1]) == 2
    old_id = parse_key(old).key_id  # type: ignore[union-attr]
    revoked = ok(invoke("keys", "revoke", old_id))
    assert revoked.stdout == (
        f"Revoked key {old_id} of tenant 'acme': it stops working within 7 s (CLOUDSCALE_WRITE_KEY_CACHE_SECONDS).\n"
    )
    with pytest.raises(KeyRejectedError) as rejected:
        authenticate(tmp_path, old)
    assert rejected.value.reason == "key_revoked"
    assert authenticate(tmp_path, new).tenant_id == "acme"
    assert parse_key(create_key(invoke)) is not None  # the revoked key's slot is free again
    assert "revoked already" in ok(invoke("keys", "revoke", old_id)).stdout


def test_suspend_resume_and_quota_change_the_stored_tenant(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("tenants", "create", "acme"))
    key = create_key(invoke)

    assert "refused within 7 s" in ok(invoke("tenants", "suspend", "acme")).stdout
    with pytest.raises(KeyRejectedError) as rejected:
        authenticate(tmp_path, key)
    assert rejected.value.reason == "tenant_suspended"
    ok(invoke("tenants", "set-quota", "acme", "--events-per-minute", "900"))
    assert stored(tmp_path)[0][0].events_per_minute == 900
    suspended_key = ok(invoke("keys", "create", "--tenant", "acme"))
    assert "Tenant 'acme' is suspended: the key works once it is resumed." in suspended_key.stderr
    ok(invoke("tenants", "resume", "acme"))
    assert authenticate(tmp_path, key).events_per_minute == 900
    assert "60000 events/min (default)" in ok(invoke("tenants", "set-quota", "acme", "--default")).stdout
    assert stored(tmp_path)[0][0] == Tenant("acme", "active", stored(tmp_path)[0][0].created_at, None)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("tenants", "create", "bad id"), "Error: 'bad id' is not a tenant id"),
        (("tenants", "create", "a/b"), "Error: 'a/b' is not a tenant id"),
        (("tenants", "show", "nobody"), "Error: there is no tenant 'nobody'"),
        (("tenants", "suspend", "nobody"), "Error: there is no tenant 'nobody'"),
        (("keys", "list", "--tenant", "nobody"), "Error: there is no tenant 'nobody'"),
        (("keys", "create", "--tenant", "nobody"), "Error: there is no tenant 'nobody'; create it first"),
        (("keys", "create", "--tenant", "acme", "--kind", "browser"), "Error: a browser key needs at least one origin"),
        (
            ("keys", "create", "--tenant", "acme", "--kind", "browser", "--origin", "https://shop.example/cart"),
            "Error: 'https://shop.example/cart' is not an origin",
        ),
        (("keys", "create", "--tenant", "acme", "--origin", "https://shop.example"), "Error: origins bind browser"),
        (("keys", "revoke", "aaaaaaaaaaaaaaaa"), "Error: there is no key 'aaaaaaaaaaaaaaaa'"),
        (("keys", "revoke", "not-a-key"), "Error: 'not-a-key' is not a key id"),
    ],
)
def test_mistakes_are_one_line_errors(invoke: Invoke, tmp_path: Path, args: tuple[str, ...], error: str) -> None:
    ok(invoke("tenants", "create", "acme"))

    assert refused(invoke(*args)).startswith(error)
    assert [key.key_id for key in stored(tmp_path)[1]] == []


@pytest.mark.parametrize(
    "args",
    [
        ("tenants", "create", "beta", "--events-per-minute", "499"),
        ("tenants", "set-quota", "acme", "--events-per-minute", "10"),
    ],
)
def test_a_quota_below_one_batch_a_minute_is_refused_as_it_would_not_be_enforced(
    invoke: Invoke, tmp_path: Path, args: tuple[str, ...]
) -> None:
    ok(invoke("tenants", "create", "acme"))

    result = invoke(*args)

    assert result.exit_code == 2, result.output
    assert "is not in the range x>=500" in result.stderr
    assert [tenant.events_per_minute for tenant in stored(tmp_path)[0]] == [None]


def test_a_tenant_is_created_once(invoke: Invoke) -> None:
    ok(invoke("tenants", "create", "acme"))

    assert refused(invoke("tenants", "create", "acme")) == "Error: tenant 'acme' exists already"


def test_the_registry_file_holds_no_key(invoke: Invoke, tmp_path: Path) -> None:
    ok(invoke("tenants", "create", "acme"))
    key = create_key(invoke)

    with closing(sqlite3.connect(tmp_path / REGISTRY_FILE)) as connection:
        dump = "\n".join(connection.iterdump())

    assert hash_key(key) in dump
    assert key not in dump
    assert key not in (tmp_path / REGISTRY_FILE).read_bytes().decode("latin-1")
