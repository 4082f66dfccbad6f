# Shared by the stage scripts: how to call the commands (the compiled CLI after `npm ci`, else tsx on the sources).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cli() {
  local name=$1; shift
  if [ -f "$ROOT/dist/cli/$name.js" ] && [ -z "${RLHF_FROM_SOURCE:-}" ]; then
    node "$ROOT/dist/cli/$name.js" "$@"
  else
    "$ROOT/node_modules/.bin/tsx" "$ROOT/src/cli/$name.ts" "$@"
  fi
}
