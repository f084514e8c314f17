#!/usr/bin/env bash
# Azurite (the Azure Storage emulator) for local runs and tests: install | start | stop | status.
# Installs the pinned npm package into .tools/azurite (git-ignored) and runs it on 127.0.0.1 only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${AZURITE_VERSION:-3.37.0}"
tools="$root/.tools/azurite"
data="${AZURITE_DATA:-$root/.azurite}"
blob_port="${AZURITE_BLOB_PORT:-10000}"
queue_port="${AZURITE_QUEUE_PORT:-10001}"
table_port="${AZURITE_TABLE_PORT:-10002}"
pidfile="$data/azurite.pid"
bin="$tools/node_modules/.bin/azurite"

install() {
  if [ -x "$bin" ] && grep -q "\"version\": \"$version\"" "$tools/node_modules/azurite/package.json" 2>/dev/null; then
    return 0
  fi
  command -v npm >/dev/null || { echo "azurite.sh: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "azurite@$version" >/dev/null
}

up() { (exec 3<>"/dev/tcp/127.0.0.1/$queue_port") 2>/dev/null; }

start() {
  install
  if up; then echo "azurite: already listening on 127.0.0.1:$queue_port"; return 0; fi
  mkdir -p "$data"
  nohup "$bin" --silent --skipApiVersionCheck --loose --location "$data" \
    --blobHost 127.0.0.1 --blobPort "$blob_port" --queueHost 127.0.0.1 --queuePort "$queue_port" \
    --tableHost 127.0.0.1 --tablePort "$table_port" >"$data/azurite.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    if up; then echo "azurite: listening on 127.0.0.1:$blob_port-$table_port (pid $(cat "$pidfile"))"; return 0; fi
    sleep 0.1
  done
  echo "azurite: did not start; see $data/azurite.log" >&2
  exit 1
}

stop() {
  if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if up; then echo running; else echo stopped; exit 1; fi ;;
  *) echo "usage: scripts/azurite.sh install|start|stop|status" >&2; exit 2 ;;
esac
