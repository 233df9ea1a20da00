#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only those that are missing.
set -euo pipefail
need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd dovecot-core)
if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then need+=(openjdk-17-jre-headless); fi
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v vmalert >/dev/null 2>&1 || need+=(victoria-metrics)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)  # tests/integration/vmalert
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium chromium-driver)  # the web console test (selenium)
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)  # Chinese in its screenshots
if [ ${#need[@]} -gt 0 ]; then
  echo "system-deps: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Cyrus IMAP, the second IMAP server (its own script: it must not replace dovecot-imapd).
bash "$(dirname "$0")/cyrus-deps.sh"
# Elasticsearch for the knowledge-base and /tools/es tests (downloaded once, cached outside the checkout).
bash "$(dirname "$0")/es-deps.sh"
# llama-server and the Qwen GGUF for the real-model tests (cached under ~/.cache/rcaflow; its own script).
bash "$(dirname "$0")/llm-deps.sh"
# The Kubernetes control plane (k8s v1.37.2 + kwok) for tests/integration/k8s_real (cached under ~/.cache/rcaflow).
bash "$(dirname "$0")/k8s-deps.sh"
