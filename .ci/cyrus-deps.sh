#!/usr/bin/env bash
# Cyrus IMAP 3.x for tests/support/cyrus.py (the second IMAP server of the IDLE latency benchmark).
#
# Do NOT `apt-get install cyrus-imapd`: it Conflicts with imap-server, so apt removes dovecot-imapd,
# which the IMAP integration tests need. Instead: install the parts that do not conflict (cyrus-common
# has master and the libraries, sasl2-bin has saslpasswd2) and unpack cyrus-imapd's .deb (imapd,
# idled) into $CYRUS_IMAPD_ROOT, where the launcher looks. Nothing is started or enabled.
set -euo pipefail
CYRUS_IMAPD_ROOT="${CYRUS_IMAPD_ROOT:-/opt/rcaflow/cyrus-imapd}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
need=()
[ -x /usr/lib/cyrus/bin/master ] || need+=(cyrus-common)
command -v saslpasswd2 >/dev/null 2>&1 || [ -x /usr/sbin/saslpasswd2 ] || need+=(sasl2-bin)
if [ ${#need[@]} -gt 0 ] || [ ! -x "$CYRUS_IMAPD_ROOT/usr/lib/cyrus/bin/imapd" ]; then
  $SUDO apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "cyrus-deps: installing ${need[*]}" >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ ! -x "$CYRUS_IMAPD_ROOT/usr/lib/cyrus/bin/imapd" ]; then
  echo "cyrus-deps: unpacking cyrus-imapd into $CYRUS_IMAPD_ROOT" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download cyrus-imapd)
  $SUDO mkdir -p "$CYRUS_IMAPD_ROOT"
  $SUDO dpkg -x "$tmp"/cyrus-imapd_*.deb "$CYRUS_IMAPD_ROOT"
fi
# cyrus-common's postinst may have enabled the system service; the tests run their own master.
if command -v systemctl >/dev/null 2>&1 && systemctl list-unit-files cyrus-imapd.service >/dev/null 2>&1; then
  $SUDO systemctl disable --now cyrus-imapd.service >/dev/null 2>&1 || true
fi
