"""Every setting the code reads is either set by the Bicep app settings or documented as optional with its default.

The reads are found by scanning ``shared/**/*.py`` (``env_str/env_int/env_float/env_bool(env, "NAME", ...)``,
``env.get("NAME")`` and the like); the documented ones are the ``Optional settings`` table of docs/operations.md.
A new setting therefore needs one of: a line in infra/main.bicep's app settings, or a row in that table.
"""

from __future__ import annotations

import pytest

# Settings the deployment must set for the app to run in Azure (the list, with the names the code reads).
REQUIRED_BY_DEPLOYMENT = {
    "TASKHUB_NAME",
    "AZURE_CLIENT_ID",
    "AZURE_OPENAI_ENDPOINT",
    "LLM_PLANNER_DEPLOYMENT",
    "LLM_WORKER_DEPLOYMENT",
    "KEY_VAULT_URL",
    "WEFT_BLOB_ACCOUNT_URL",
    "WEFT_SANDBOX_BACKEND",
    "WEFT_SESSION_POOL_ENDPOINT",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
}

OPTIONAL_HEADING = "Optional settings"
DEPLOYED_HEADING = "Settings set by the deployment"


@pytest.fixture(scope="module")
def bicep_settings(infra) -> set[str]:
    return infra.app_setting_names()


@pytest.fixture(scope="module")
def optional_settings(operations_doc, doc_tables) -> dict[str, str]:
    """Setting name -> documented default, from the Optional settings table."""
    read_table, names_in = doc_tables
    rows = read_table(operations_doc, OPTIONAL_HEADING)
    documented = {}
    for row in rows:
        for name in names_in(row.get("Setting", "")):
            documented[name] = row.get("Default", "").strip()
    return documented


def test_scanner_finds_the_base_setting(shared_env_reads):
    # Guards the scan itself: shared/runtime.py reads WEFT_STATE_DIR through env_str.
    assert "WEFT_STATE_DIR" in {read.name for read in shared_env_reads}


def test_every_setting_read_is_deployed_or_documented(shared_env_reads, bicep_settings, optional_settings):
    known = bicep_settings | set(optional_settings)
    missing: dict[str, list[str]] = {}
    for read in shared_env_reads:
        if read.name and read.name not in known:
            missing.setdefault(read.name, []).append(read.where)
    assert missing == {}, (
        "settings read by the code but neither set in infra/main.bicep app settings nor listed with a default under "
        f"'{OPTIONAL_HEADING}' in docs/operations.md: {missing}"
    )


def test_setting_names_are_literal(shared_env_reads):
    dynamic = sorted(read.where for read in shared_env_reads if read.name is None)
    assert dynamic == [], (
        "settings read with a computed name cannot be checked against the deployment; use a string literal or a "
        f"module-level constant: {dynamic}"
    )


def test_documented_optional_settings_have_defaults(optional_settings):
    assert optional_settings, "the Optional settings table is empty"
    assert [name for name, default in optional_settings.items() if not default] == []


def test_deployment_sets_the_required_settings(bicep_settings):
    assert sorted(REQUIRED_BY_DEPLOYMENT - bicep_settings) == []


def test_deployed_settings_are_documented(bicep_settings, operations_doc, doc_tables):
    read_table, names_in = doc_tables
    documented = {name for row in read_table(operations_doc, DEPLOYED_HEADING) for name in names_in(row["Setting"])}
    assert sorted(bicep_settings - documented) == [], "add these to the deployment settings table"
    assert sorted(documented - bicep_settings) == [], "the table lists settings the Bicep does not set"


# ------------------------------------------------------------------------------------------------ the scanner


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('x = env_str(env, "A_NAME", "d")', ["A_NAME"]),
        ('x = env_int(env, "N", 3, minimum=1)', ["N"]),
        ('x = settings.env_float(env, "F", 1.0)', ["F"]),
        ('x = env_bool(env, name="B", default=False)', ["B"]),
        ('x = env.get("G")', ["G"]),
        ('x = self._env.get("H", "")', ["H"]),
        ('x = os.environ.get("I")', ["I"]),
        ('x = os.environ["J"]', ["J"]),
        ('x = os.getenv("K")', ["K"]),
        ('NAME = "L"\nx = env_str(env, NAME, "")', ["L"]),
        (
            'def f(env):\n    names = {"a": "T1", "b": "T2"}\n'
            "    return {k: env_int(env, n, 1) for k, n in names.items()}",
            ["T1", "T2"],
        ),
        ('def f(env):\n    for n in ("U1", "U2"):\n        env_str(env, n, "")', ["U1", "U2"]),
        ('def f(env):\n    names = {"V1": "a"}\n    return [env_int(env, k, 1) for k, v in names.items()]', [None]),
        ('x = env_str(env, prefix + "M", "")', [None]),
        (
            'import dataclasses\nP = "W_"\n@dataclasses.dataclass\nclass C:\n    a_b: int = 1\n    c: float = 2.0\n'
            "    @classmethod\n    def from_env(cls, env):\n        for f in dataclasses.fields(cls):\n"
            "            name = P + f.name.upper()\n            env_int(env, name, 1)",
            ["W_A_B", "W_C"],
        ),
        ('P = "X_"\ndef f(env, key):\n    return env.get(f"{P}{key}")', [None]),
        ('def f(env):\n    n = "Y_" + "Z"\n    return env_str(env, n.lower(), "")', ["y_z"]),
        ('x = cache.get("not-a-setting")', []),
        ('os.environ.setdefault("HF_HUB_OFFLINE", "1")', []),
        ("def env_str(env, name, default):\n    return env.get(name)", []),
    ],
    ids=[
        "env_str",
        "env_int",
        "attr-env_float",
        "kw-env_bool",
        "env.get",
        "self._env.get",
        "os.environ.get",
        "os.environ[]",
        "os.getenv",
        "constant",
        "dict-table",
        "tuple-loop",
        "dict-key-is-not-a-name",
        "computed",
        "dataclass-fields",
        "fstring-param",
        "local-concat",
        "other-get",
        "setdefault-is-a-write",
        "helper-body",
    ],
)
def test_scanner_recognises_read_patterns(env_scanner, source, expected):
    assert [read.name for read in env_scanner(source)] == expected
