#!/usr/bin/env node
// Runs at `npm install` / `npm ci`: builds the optional native addons. native/blas (OpenBLAS products: the wasm
// backend's matrix products several times faster, and the native backend's) and native/engine (the native backend's
// multi-threaded kernels: tensors in native memory, no 4 GiB wasm heap). Never fails the install: without a compiler
// or OpenBLAS's headers it prints how to get them and the stock wasm kernels are used. RLHF_SKIP_NATIVE_BUILD=1
// skips it.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const note = (msg) => console.log(`rlhf-ts: ${msg}`);
const hint = 'apt-get install libopenblas-dev (or your system\'s OpenBLAS package), then npm run build:blas';

function findCblas() {
  const dirs = ['/usr/include', '/usr/local/include', '/opt/homebrew/opt/openblas/include', '/usr/local/opt/openblas/include'];
  for (const d of dirs) {
    if (existsSync(join(d, 'cblas.h'))) return true;
    try {
      if (readdirSync(d, { withFileTypes: true }).some((e) => e.isDirectory() && existsSync(join(d, e.name, 'cblas.h')))) return true;
    } catch {
      // not there
    }
  }
  return false;
}

// Under npm, its bundled node-gyp is named by npm_config_node_gyp; elsewhere, one on PATH.
const gyp = process.env.npm_config_node_gyp ? [process.execPath, process.env.npm_config_node_gyp] : ['node-gyp'];
function build(dir) {
  const r = spawnSync(gyp[0], [...gyp.slice(1), 'rebuild', '--directory', join(root, 'native', dir)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', shell: process.platform === 'win32' });
  return r.status === 0 ? '' : (r.error?.message ?? r.stderr.trim().split('\n').at(-1)) || `exit ${r.status}`;
}

if (process.env.RLHF_SKIP_NATIVE_BUILD === '1') process.exit(0);
if (!existsSync(join(root, 'native', 'blas', 'binding.gyp'))) process.exit(0);
if (!findCblas()) {
  note(`OpenBLAS not found; CPU training uses the stock wasm kernels. For the native backend and ~5x faster CPU training: ${hint}`);
  process.exit(0);
}
const blasError = build('blas');
if (!blasError) note('built the OpenBLAS addon (native/blas): the wasm backend runs its matrix products through OpenBLAS');
else note(`could not build the OpenBLAS addon (${blasError}); CPU training uses the stock wasm kernels. ${hint}`);
if (!blasError && existsSync(join(root, 'native', 'engine', 'binding.gyp'))) {
  const engineError = build('engine');
  if (!engineError) note('built the native engine (native/engine): --backend native keeps tensors in native memory with multi-threaded kernels');
  else note(`could not build the native engine (${engineError}); --backend auto uses wasm. A C++17 compiler, then npm run build:engine`);
}
