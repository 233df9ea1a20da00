#!/usr/bin/env bash
# The Elasticsearch the tests start (tests/support/es/server.py): Maven Central's integ-test-zip 8.19.x,
# fetched into ~/.m2 and unpacked once into ~/.cache/rcaflow/elasticsearch-<version>/ (reused when present).
# Needs Java 17 and Maven, which system-deps.sh installs first.
set -euo pipefail
bash "$(dirname "$0")/../tests/support/es/install-es.sh" >/dev/null
