"""The delivery pipeline, `.github/workflows/ci-cd.yml`.

Two kinds of check: the file is valid against GitHub's workflow schema (with
`check-jsonschema`'s vendored copy, so offline), and it has the shape `docs/deploy.md`
promises: pull requests are tested, only main is deployed, dev before production, Azure
sign-in by OpenID Connect with no secret, the Bicep template and the environment's
parameters, a Core Tools publish retried within a bound, and a smoke test (`.ci/smoke`, run
for real in `test_ci_scripts.py`) that needs a 202.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ingest.validation import validate_event

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"
SMOKE = ROOT / ".ci" / "smoke"

# (GitHub environment, the deploy job's parameters file, the environment it must follow)
ENVIRONMENTS = [
    ("dev", "infra/parameters/dev.parameters.json", None),
    ("production", "infra/parameters/prod.parameters.json", "dev"),
]

# The majors docs/deploy.md and the workflow's comments were checked against.
PINNED_ACTIONS = {
    "actions/checkout": "v4",
    "actions/setup-python": "v5",
    "actions/setup-node": "v4",
    "actions/cache": "v4",
    "azure/login": "v2",
}

INVALID_WORKFLOWS = {
    "job without runs-on": """
        on: push
        jobs:
          build:
            steps:
              - run: echo hi
        """,
    "misspelled job key": """
        on: push
        jobs:
          build:
            runs_on: ubuntu-24.04
            steps:
              - run: echo hi
        """,
    "permission that does not exist": """
        on: push
        permissions:
          id-token: maybe
        jobs:
          build:
            runs-on: ubuntu-24.04
            steps:
              - run: echo hi
        """,
}


def _missing(what: str) -> NoReturn:
    """Skip saying what is missing; on CI (`CI=true`) fail instead, where a silently
    skipped check would look like a passing one."""
    reason = f"!!! {what} NOT INSTALLED, workflow tests NOT RUN: pip install -r requirements-dev.txt"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _check_jsonschema() -> Path:
    # Beside the interpreter running the tests: the virtualenv's bin folder.
    executable = Path(sys.executable).with_name("check-jsonschema")
    if not executable.exists():
        _missing(f"check-jsonschema ({executable})")
    return executable


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_check_jsonschema()), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    # ruamel.yaml comes with check-jsonschema. It reads YAML 1.2, where `on:` stays the
    # string "on" (YAML 1.1 readers turn it into True).
    try:
        from ruamel.yaml import YAML
    except ImportError:
        _missing("ruamel.yaml (comes with check-jsonschema)")
    loaded = YAML(typ="safe", pure=True).load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = workflow["jobs"]
    assert isinstance(jobs, dict)
    return jobs


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = job.get("steps", [])
    assert isinstance(steps, list)
    return steps


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def _environment(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    if isinstance(environment, dict):
        name = environment.get("name")
        return name if isinstance(name, str) else None
    return environment if isinstance(environment, str) else None


def _job_for(workflow: dict[str, Any], environment: str) -> tuple[str, dict[str, Any]]:
    found = [(job_id, job) for job_id, job in _jobs(workflow).items() if _environment(job) == environment]
    assert len(found) == 1, f"expected one job deploying to the {environment!r} environment, found {len(found)}"
    return found[0]


def _test_job_id(workflow: dict[str, Any]) -> str:
    found = [job_id for job_id, job in _jobs(workflow).items() if any(".ci/run" in _run(s) for s in _steps(job))]
    assert len(found) == 1, "expected exactly one job running .ci/run"
    return found[0]


def _run(step: dict[str, Any]) -> str:
    run = step.get("run", "")
    return run if isinstance(run, str) else ""


def _index(steps: list[dict[str, Any]], text: str) -> int:
    """The index of the first step whose script contains `text`."""
    for index, step in enumerate(steps):
        if text in _run(step):
            return index
    raise AssertionError(f"no step runs {text!r}")


def _all_run_scripts(workflow: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for job_id, job in _jobs(workflow).items():
        for step in _steps(job):
            if "run" in step:
                yield f"{job_id}: {step.get('name', step['run'][:40])}", _run(step)


# --- schema -------------------------------------------------------------------------------


def test_workflow_is_valid_against_the_github_workflow_schema() -> None:
    result = _validate(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("text", INVALID_WORKFLOWS.values(), ids=INVALID_WORKFLOWS.keys())
def test_schema_check_fails_an_invalid_workflow(tmp_path: Path, text: str) -> None:
    path = tmp_path / "invalid.yml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    result = _validate(path)
    assert result.returncode != 0, f"check-jsonschema accepted an invalid workflow:\n{result.stdout}"


# --- triggers and the test gate ----------------------------------------------------------------


def test_pull_requests_and_pushes_to_main_trigger_it(workflow: dict[str, Any]) -> None:
    triggers = workflow["on"]
    assert "main" in triggers["pull_request"]["branches"]
    assert "main" in triggers["push"]["branches"]
    assert "workflow_dispatch" in triggers


def test_the_test_job_runs_lint_and_tests_under_ci(workflow: dict[str, Any]) -> None:
    job = _jobs(workflow)[_test_job_id(workflow)]
    assert "if" not in job, "the test job must run for pull requests and pushes alike"
    step = _steps(job)[_index(_steps(job), ".ci/run")]
    ci = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}.get("CI")
    assert str(ci).lower() == "true", "the test step must run with CI=true"
    uses = {s["uses"].split("@")[0]: s.get("with", {}) for s in _steps(job) if "uses" in s}
    # 3.13 (the deploy Python, for the worker-conformance tier) and 3.11, last, as the default
    assert str(uses["actions/setup-python"]["python-version"]).split() == ["3.13", "3.11"]
    assert str(uses["actions/setup-node"]["node-version"]) == "20"


# --- deploy jobs --------------------------------------------------------------------------


@pytest.mark.parametrize(("environment", "parameters", "after"), ENVIRONMENTS)
def test_deploy_job_order_and_trigger(
    workflow: dict[str, Any], environment: str, parameters: str, after: str | None
) -> None:
    _, job = _job_for(workflow, environment)
    needs = _needs(job)
    if after is None:
        assert _test_job_id(workflow) in needs, f"{environment} must wait for the tests"
    else:
        assert _job_for(workflow, after)[0] in needs, f"{environment} must wait for {after}"
    condition = job.get("if", "")
    assert "github.event_name == 'push'" in condition, f"{environment}: deploy on pushes, never on pull requests"
    assert "github.ref == 'refs/heads/main'" in condition, f"{environment}: deploy from main only"
    assert "pull_request" not in condition
    concurrency = job["concurrency"]
    assert environment in concurrency["group"], "deployments serialise per environment"
    assert concurrency["cancel-in-progress"] is False, "never cancel a deployment half-way"


@pytest.mark.parametrize(("environment", "parameters", "after"), ENVIRONMENTS)
def test_deploy_job_signs_in_with_oidc_only(
    workflow: dict[str, Any], environment: str, parameters: str, after: str | None
) -> None:
    _, job = _job_for(workflow, environment)
    assert job["permissions"]["id-token"] == "write"
    logins = [s for s in _steps(job) if str(s.get("uses", "")).startswith("azure/login@")]
    assert logins, f"{environment}: no azure/login step"
    for login in logins:
        inputs = login.get("with", {})
        for name in ("client-id", "tenant-id", "subscription-id"):
            assert "vars." in str(inputs.get(name, "")), f"{environment}: azure/login {name} must come from a variable"
        assert not {"creds", "client-secret", "auth-type"} & set(inputs), f"{environment}: OIDC only, no secret"


@pytest.mark.parametrize(("environment", "parameters", "after"), ENVIRONMENTS)
def test_deploy_job_deploys_bicep_publishes_and_smoke_tests(
    workflow: dict[str, Any], environment: str, parameters: str, after: str | None
) -> None:
    _, job = _job_for(workflow, environment)
    steps = _steps(job)
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert "needs.test.outputs.sha" in str(checkout.get("with", {}).get("ref")), "deploy the commit that was tested"
    first_login = next(i for i, s in enumerate(steps) if str(s.get("uses", "")).startswith("azure/login@"))
    deploy = _index(steps, "az deployment group create")
    publish = _index(steps, "func azure functionapp publish")
    smoke = _index(steps, ".ci/smoke")
    assert first_login < deploy < publish < smoke

    script = _run(steps[deploy])
    assert "infra/main.bicep" in script
    assert parameters in script, f"{environment} must deploy with {parameters}"
    assert "--query properties.outputs" in script
    assert "$GITHUB_OUTPUT" in script, "the template's outputs must become step outputs"

    publish_step = steps[publish]
    assert "--python" in _run(publish_step)
    assert "steps.infra.outputs.functionAppName" in str(publish_step.get("env", {}))
    assert any("azure-functions-core-tools@4" in _run(s) for s in steps[:publish]), "Core Tools v4 installed first"

    smoke_step = steps[smoke]
    assert "steps.infra.outputs.healthUrl" in str(smoke_step.get("env", {}))
    assert "steps.infra.outputs.ingestUrl" in str(smoke_step.get("env", {}))
    smoke_script = SMOKE.read_text(encoding="utf-8")
    assert '"healthy"' in smoke_script, "the smoke test must wait for every dependency to be healthy"
    assert '"202"' in smoke_script, "the smoke test must require HTTP 202"


@pytest.mark.parametrize(("environment", "parameters", "after"), ENVIRONMENTS)
def test_publish_retries_within_a_bound(
    workflow: dict[str, Any], environment: str, parameters: str, after: str | None
) -> None:
    # A fresh environment's role assignments take minutes to apply, and the publish fails on
    # them meanwhile: it runs under .ci/retry, a bounded number of times.
    _, job = _job_for(workflow, environment)
    script = _run(_steps(job)[_index(_steps(job), "func azure functionapp publish")])
    match = re.fullmatch(r"bash \.ci/retry (\d+) (\d+) func azure functionapp publish .*--build remote\n?", script)
    assert match, f"{environment}: publish through .ci/retry TRIES DELAY: {script!r}"
    tries, delay = int(match.group(1)), int(match.group(2))
    assert 2 <= tries <= 5
    assert delay >= 10, "give the role assignments time between tries"
    pauses = sum(delay * 2**n for n in range(tries - 1))
    assert pauses <= 15 * 60, "at most 15 minutes of pauses"


@pytest.mark.parametrize(("environment", "parameters", "after"), ENVIRONMENTS)
def test_the_retries_fit_in_the_job(
    workflow: dict[str, Any], environment: str, parameters: str, after: str | None
) -> None:
    _, job = _job_for(workflow, environment)
    steps = _steps(job)
    smoke_env = steps[_index(steps, ".ci/smoke")].get("env", {})
    health_timeout = int(smoke_env["HEALTH_TIMEOUT"])
    assert 600 <= health_timeout <= 20 * 60, "long enough for role assignments (up to 10 min), bounded"
    match = re.search(r"\.ci/retry (\d+) (\d+)", _run(steps[_index(steps, "func azure functionapp publish")]))
    assert match
    pauses = sum(int(match.group(2)) * 2**n for n in range(int(match.group(1)) - 1))
    # The Data Explorer cluster's first creation (up to 20 minutes) comes before both.
    assert 20 * 60 + pauses + health_timeout < int(job["timeout-minutes"]) * 60


@pytest.mark.parametrize(("environment", "parameters", "after"), ENVIRONMENTS)
def test_deployed_files_exist(environment: str, parameters: str, after: str | None) -> None:
    assert (ROOT / "infra" / "main.bicep").is_file()
    assert (ROOT / parameters).is_file(), f"{parameters} is missing"


def test_smoke_event_is_the_seed_example_and_is_valid() -> None:
    script = SMOKE.read_text(encoding="utf-8")
    match = re.search(r"printf '(\{.*?\})'", script)
    assert match, "the smoke test builds its event with printf"
    event = json.loads(match.group(1).replace("%s", "12345"))
    assert event == {"eventType": "page_view", "correlationId": "smoke-12345", "tenantId": "smoke", "url": "/home"}
    result = validate_event(event, received_at=datetime.now(UTC), measure_size=True)
    assert not isinstance(result, list), f"ingest would reject the smoke event: {result}"


def test_only_dev_and_production_are_deployed(workflow: dict[str, Any]) -> None:
    # Required reviewers are a setting of the GitHub environment named `production`
    # (docs/deploy.md): a deploy job under any other name would skip the approval.
    environments = {_environment(job) for job in _jobs(workflow).values()} - {None}
    assert environments == {"dev", "production"}
    for job in _jobs(workflow).values():
        if _environment(job) is None:
            assert "id-token" not in job.get("permissions", {}), "only environment jobs may get an Azure token"
    assert "id-token" not in workflow.get("permissions", {})


# --- hygiene --------------------------------------------------------------------------------


def test_no_secrets_are_referenced() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "secrets." not in text
    for word in ("client-secret", "creds:", "publish-profile", "AccountKey", "SharedAccessKey"):
        assert word not in text, word


def test_actions_are_pinned_to_their_major(workflow: dict[str, Any]) -> None:
    for job_id, job in _jobs(workflow).items():
        for step in _steps(job):
            if "uses" not in step:
                continue
            action, _, version = str(step["uses"]).partition("@")
            assert action in PINNED_ACTIONS, f"{job_id}: unexpected action {action}"
            expected = PINNED_ACTIONS[action]
            assert version == expected, f"{job_id}: {action}@{version}, expected @{expected}"


def test_run_scripts_parse_and_take_no_expressions(workflow: dict[str, Any]) -> None:
    # Values reach scripts through `env:`, never `${{ }}` pasted into the script text, where
    # a crafted value would become shell code.
    bash = shutil.which("bash")
    assert bash, "bash is needed to parse the workflow's scripts"
    for where, script in _all_run_scripts(workflow):
        assert "${{" not in script, f"{where}: pass values through env, not ${{{{ }}}} in the script"
        result = subprocess.run([bash, "-n"], input=script, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{where}: {result.stderr}"
