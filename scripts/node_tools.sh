#!/usr/bin/env bash
# Node.js packages the tests use (pinned), installed into .tools/node (git-ignored): install | path.
# Today: the TypeScript MCP SDK, an MCP client independent of the Python SDK, for the devhost's MCP endpoint tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools/node"
mcp_sdk_version="${MCP_TS_SDK_VERSION:-1.32.2}"

install() {
  if grep -q "\"version\": \"$mcp_sdk_version\"" "$tools/node_modules/@modelcontextprotocol/sdk/package.json" 2>/dev/null; then
    return 0
  fi
  command -v npm >/dev/null || { echo "node_tools.sh: npm is required (apt-get install nodejs npm)" >&2; exit 1; }
  mkdir -p "$tools"
  [ -f "$tools/package.json" ] || echo '{"name": "weft-test-tools", "private": true}' >"$tools/package.json"
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error --save-exact \
    "@modelcontextprotocol/sdk@$mcp_sdk_version" >/dev/null
}

case "${1:-install}" in
  install) install ;;
  path) echo "$tools/node_modules" ;;
  *) echo "usage: scripts/node_tools.sh install|path" >&2; exit 2 ;;
esac
