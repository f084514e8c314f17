from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fakes.identity_server import FakeManagedIdentityEndpoint
from tests.fakes.openai_server import FakeChatCompletionsServer
from tests.support import ROOT, DevhostProcess, devhost_env, free_port

CLIENT_ID = "00000000-0000-0000-0000-00000000c1d1"


@dataclass
class TaskStack:
    host: DevhostProcess
    llm: FakeChatCompletionsServer
    identity: FakeManagedIdentityEndpoint


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskStack]:
    """The app on a devhost, calling a loopback Azure OpenAI (v1 API) with a token from a loopback App Service
    managed-identity endpoint: the real openai and azure-identity SDKs end to end."""
    identity = FakeManagedIdentityEndpoint(client_id=CLIENT_ID)
    identity.start()
    token = identity.token_for("https://cognitiveservices.azure.com")
    llm = FakeChatCompletionsServer(bearer=token, deployments=["planner-dep", "worker-dep"])
    llm.start()
    state = tmp_path_factory.mktemp("task")
    env = devhost_env({
        "AzureWebJobsStorage": "",
        "WEFT_STATE_DIR": str(state),
        "WEFT_PAYLOAD_DIR": str(state / "payloads"),
        "AZURE_OPENAI_ENDPOINT": llm.endpoint,
        "LLM_PLANNER_DEPLOYMENT": "planner-dep",
        "LLM_WORKER_DEPLOYMENT": "worker-dep",
        "AZURE_CLIENT_ID": CLIENT_ID,
        "LLM_MAX_RETRIES": "0",
        "WEFT_LLM_RETRY_INTERVAL_MS": "200",
        "WEFT_APPROVAL_TIMEOUT_S": "4",
        "WEFT_CATALOG_FILES": str(ROOT / "tests" / "fakes" / "approval_catalog.json"),
        "WEFT_SEARCH_CACHE_DIR": str(state / "embeddings"),
        **identity.environment,
    })
    host = DevhostProcess(ROOT, state / "devhost.sqlite", free_port(), env).start()
    yield TaskStack(host, llm, identity)
    host.stop()
    llm.stop()
    identity.stop()
