"""Fixtures: a real Prefect server and `lmpipe serve` on it, shared by the tests of a module.

Module-scoped, so neither outlives the deployment tests while the rest of the suite runs (a directory without
__init__.py gets no package scope).

    prefect_server   `prefect server start` on 127.0.0.1, a free port and a throwaway PREFECT_HOME
    served           `lmpipe serve` against it: lmpipe's deployments, their flow runs run by that process
    prefect_api      this process's Prefect client pointed at the server for one test (the other tests of the
                     session keep the ephemeral API)

test_prefect_deploy.py starts a server of its own: `prefect deploy` rewrites deployments of the same names.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deployments.prefect_server import PrefectServer, Served, api, lmpipe_serve, prefect_server_at


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with prefect_server_at(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture(scope="module")
def served(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with lmpipe_serve(prefect_server, tmp_path_factory.mktemp("lmpipe-serve")) as serving:
        yield serving


@pytest.fixture
def prefect_api(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    with api(prefect_server):
        yield prefect_server
