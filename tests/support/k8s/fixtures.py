"""Session fixture: one real Kubernetes control plane (tests/support/k8s/cluster.py), started only if used.

Without the binaries the tests skip with the command that builds them, except in CI (``CI=true``), where that
is a failure: `make test` builds them once per machine (.ci/k8s-deps.sh) and reuses the cache.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.support.k8s.cluster import BUILD_SCRIPT, ClusterError, K8sCluster, bin_dir, missing_binaries, start


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sCluster]:
    """etcd + kube-apiserver + controller-manager + scheduler + kwok on loopback, with one Ready fake node."""
    missing = missing_binaries()
    if missing:
        why = (f"the Kubernetes control plane is not built ({', '.join(missing)} missing in {bin_dir()}); "
               f"build it once with: bash {BUILD_SCRIPT.relative_to(BUILD_SCRIPT.parents[3])}")
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    run_dir = tmp_path_factory.mktemp("k8s")
    try:
        cluster = start(run_dir)
    except ClusterError as exc:
        pytest.fail(f"cannot start the test Kubernetes control plane: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(run_dir / "etcd", ignore_errors=True)
