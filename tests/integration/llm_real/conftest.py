"""One real ``llama-server`` with Qwen2.5-Coder-0.5B-Instruct for the whole session (tests/support/llm/server.py).

Session-scoped because loading the model takes a few seconds and every test can share it; one slot
(``-np 1``), so the tests' requests queue rather than slow each other down. The binary and the
weights come from ``.ci/llm-deps.sh`` (run by ``make test`` through .ci/system-deps.sh); without them
the tests fail with that hint rather than skip, like every other real service here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.llm.server import LlamaServer, LlamaServerError, missing, running

#: Small context: memory stays ~0.5 GB and the overflow test needs only a few thousand tokens of prompt.
CONTEXT_TOKENS = 4096


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    why = missing()
    if why is not None:
        pytest.fail(why)
    try:
        with running(tmp_path_factory.mktemp("llama"), ctx=CONTEXT_TOKENS, threads=2) as server:
            yield server
    except LlamaServerError as exc:
        pytest.fail(str(exc))


# The real Prometheus of the evidence tests (session-scoped, Debian's binary), for the live evidence round.
from tests.integration.evidence.conftest import prometheus  # noqa: E402, F401
