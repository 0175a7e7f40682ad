"""The client-key secret: the setting's, required on Azure, else one kept per data folder
(`Container.client_key_secret` over `shared.adapters.instance.client_key_secret`)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shared.adapters.instance.client_key_secret import CLIENT_KEY_SECRET_FILE, data_folder_secret
from shared.bootstrap import Container
from shared.settings import SettingsError, load_settings


def test_without_the_setting_a_secret_is_generated_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = load_settings({"CLOUDSCALE_DATA_DIR": str(tmp_path / "data")})

    first = Container(settings).client_key_secret()

    path = tmp_path / "data" / CLIENT_KEY_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert Container(settings).client_key_secret() == first, "kept: a restart keeps every client's bucket"


def test_the_setting_wins_and_nothing_is_written(tmp_path: Path) -> None:
    settings = load_settings(
        {"CLOUDSCALE_DATA_DIR": str(tmp_path), "CLOUDSCALE_CLIENT_KEY_SECRET": "0123456789abcdef-secret"}
    )

    assert Container(settings).client_key_secret() == b"0123456789abcdef-secret"
    assert not (tmp_path / CLIENT_KEY_SECRET_FILE).exists()


def test_on_azure_the_setting_is_required() -> None:
    settings = load_settings(
        {
            "CLOUDSCALE_BACKEND": "azure",
            "ServiceBusConnection__fullyQualifiedNamespace": "cs.servicebus.windows.net",
            "AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net",
            "CosmosDBConnection__accountEndpoint": "https://cs.documents.azure.com:443/",
        }
    )
    with pytest.raises(SettingsError, match="CLOUDSCALE_CLIENT_KEY_SECRET"):
        Container(settings).client_key_secret()


def test_a_short_secret_setting_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError, match="CLOUDSCALE_CLIENT_KEY_SECRET") as caught:
        load_settings({"CLOUDSCALE_CLIENT_KEY_SECRET": "short-value"})
    assert "short-value" not in str(caught.value)


def test_a_secret_file_cut_short_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / CLIENT_KEY_SECRET_FILE).write_text("abc", encoding="ascii")

    with pytest.raises(SettingsError, match=CLIENT_KEY_SECRET_FILE):
        data_folder_secret(tmp_path)
