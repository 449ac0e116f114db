#!/usr/bin/env bash
# Installs the system tools the integration tests drive (Debian, as root)
# when any is missing. With CI=true a tool that is still missing afterwards
# fails the run; elsewhere the tests that need it skip and say why.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
# Firefox drives the cross-browser calls (e2e/firefox_test.go) over WebDriver BiDi.
command -v firefox-esr >/dev/null || need+=(firefox-esr)
command -v turnutils_uclient >/dev/null || need+=(coturn)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
# promtool (checks deploy/prometheus) comes with the prometheus package;
# without its recommends, which would add node-exporter and disk tools.
lean=()
command -v promtool >/dev/null || lean+=(prometheus)

if [ ${#need[@]} -eq 0 ] && [ ${#lean[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing test tools: ${need[*]} ${lean[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ ${#need[@]} -gt 0 ]; then apt-get install -y -qq "${need[@]}" >/dev/null; fi
  if [ ${#lean[@]} -gt 0 ]; then apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null; fi
  # coturn's package starts a turnserver on 3478; the tests start their own.
  if command -v systemctl >/dev/null; then systemctl disable --now coturn >/dev/null 2>&1 || true; fi
  pkill -x turnserver 2>/dev/null || true
  # The same goes for the packaged redis-server: tests start their own.
  if command -v systemctl >/dev/null; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
  # Only promtool is wanted from the prometheus package, not its server.
  if command -v systemctl >/dev/null; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
elif [ "${CI:-}" = "true" ]; then
  echo "missing test tools (${need[*]} ${lean[*]}) and cannot install them (need root and apt-get)" >&2
  exit 1
else
  echo "note: missing ${need[*]} ${lean[*]}; tests that need them will skip" >&2
fi
