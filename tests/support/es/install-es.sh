#!/usr/bin/env bash
# Installs the Elasticsearch the tests run (tests/support/es/server.py): the Maven Central
# distribution org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip,
# fetched by Maven into ~/.m2 (never into the checkout: Elastic License/SSPL/AGPL) and unpacked
# once into $RCAFLOW_CACHE_DIR/elasticsearch-$ES_VERSION/ (default ~/.cache/rcaflow), reused when present.
# 8.19.x runs on Java 17. Prints the install directory.
set -euo pipefail
ES_VERSION="${ES_VERSION:-8.19.21}"
CACHE="${RCAFLOW_CACHE_DIR:-$HOME/.cache/rcaflow}"
DEST="$CACHE/elasticsearch-$ES_VERSION"
if [ -x "$DEST/bin/elasticsearch" ]; then echo "$DEST"; exit 0; fi
ZIP="$HOME/.m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
if [ ! -f "$ZIP" ]; then
  echo "es-install: fetching the integ-test-zip $ES_VERSION from Maven Central" >&2
  nice -n 15 mvn -B -q dependency:get \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" -Dtransitive=false >&2
fi
mkdir -p "$CACHE"
tmp="$(mktemp -d "$CACHE/.elasticsearch-$ES_VERSION.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
unzip -q "$ZIP" -d "$tmp"
# Readable by the unprivileged user the node runs as (it refuses root).
chmod -R a+rX "$tmp/elasticsearch-$ES_VERSION"
mv "$tmp/elasticsearch-$ES_VERSION" "$DEST"
echo "$DEST"
