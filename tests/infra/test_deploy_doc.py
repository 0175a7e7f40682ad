"""`docs/deploy.md` against what it describes: the workflow's variables, the template's
outputs and alert rules, the files and commands it names. An operator follows the runbook
to the letter, so a renamed output or option must fail here rather than in their terminal."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from cloudscale_local.cli.main import main as cloudscale

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"
WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"
MAIN_BICEP = ROOT / "infra" / "main.bicep"
ALERTS_BICEP = ROOT / "infra" / "modules" / "alerts.bicep"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_workflow_variable_is_documented(doc: str) -> None:
    variables = set(re.findall(r"vars\.([A-Z0-9_]+)", WORKFLOW.read_text(encoding="utf-8")))
    assert variables, "the workflow reads no variables?"
    missing = sorted(name for name in variables if f"`{name}`" not in doc and f" {name} " not in doc)
    assert not missing, f"docs/deploy.md does not say how to set {missing}"


def test_every_template_output_is_documented(doc: str) -> None:
    outputs = re.findall(r"^output (\w+) ", MAIN_BICEP.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert outputs
    missing = [name for name in outputs if f"`{name}`" not in doc]
    assert not missing, f"outputs of infra/main.bicep missing from docs/deploy.md: {missing}"


def test_every_alert_rule_is_documented(doc: str) -> None:
    rules = re.findall(r"name: '\$\{namePrefix\}-([a-z0-9-]+)'", ALERTS_BICEP.read_text(encoding="utf-8"))
    assert rules
    missing = [rule for rule in rules if f"`cloudscale-<env>-{rule}`" not in doc]
    assert not missing, f"alert rules missing from docs/deploy.md: {missing}"


def test_named_files_exist(doc: str) -> None:
    paths = set(re.findall(r"`((?:infra|changefeed|docs|\.github)/[\w./-]+\.\w+)`", doc))
    assert {"infra/main.bicep", "infra/parameters/dev.parameters.json"} <= paths
    missing = sorted(path for path in paths if not (ROOT / path).is_file())
    assert not missing, f"docs/deploy.md names files that do not exist: {missing}"


def test_relative_links_resolve(doc: str) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc):
        assert (DOC.parent / target).exists(), f"broken link: {target}"


def test_anchors_resolve(doc: str) -> None:
    headings = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in doc.splitlines()
        if line.startswith("#")
    }
    for anchor in re.findall(r"\]\(#([^)]+)\)", doc):
        assert anchor in headings, f"no heading for #{anchor}"


@pytest.mark.parametrize(
    ("command", "option"),
    [("kusto-setup", "--dry-run"), ("reconcile", "--hours"), ("dlq", None)],
)
def test_cloudscale_commands_exist(doc: str, command: str, option: str | None) -> None:
    assert f"cloudscale {command}" in doc
    assert isinstance(cloudscale, click.Group)
    found = cloudscale.commands.get(command)
    assert found is not None, f"`cloudscale {command}` does not exist"
    if option is not None:
        assert option in doc
        assert any(option in param.opts for param in found.params), f"`cloudscale {command}` has no {option}"
