/** Backend choice: `auto` says why it skipped webgpu in its one line, without Dawn's native warnings on stderr. */
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { engineAddonPath } from '../src/engine/native_backend.js';
import { blasAddonPath } from '../src/engine/native_blas.js';

describe('backend auto', () => {
  it('probes WebGPU quietly and names the backend it took', () => {
    const script = "import('./src/engine/backend.ts').then((m) => m.initBackend('auto'));";
    const r = spawnSync('npx', ['tsx', '--eval', script], { encoding: 'utf8', env: { ...process.env, RLHF_NATIVE_BLAS: '0' } });
    expect(r.status, r.stderr).toBe(0);
    const line = r.stderr.split('\n').find((l) => l.startsWith('backend: '));
    expect(line).toBeDefined();
    // Either webgpu was taken, or the line says why not: Dawn's own "Couldn't load Vulkan" text never reaches the user.
    if (!/^backend: webgpu/.test(line!)) expect(line).toMatch(/webgpu: (no adapter|not installed|probe exited)/);
    expect(r.stderr).not.toMatch(/Couldn't load|BackendVk|third_party\/dawn/);
  });

  it('prefers the native backend when its addons are built, and says why not otherwise', () => {
    const script = "import('./src/engine/backend.ts').then((m) => m.initBackend('auto'));";
    const line = (env: Record<string, string>) => {
      const r = spawnSync('npx', ['tsx', '--eval', script], { encoding: 'utf8', env: { ...process.env, ...env } });
      expect(r.status, r.stderr).toBe(0);
      return r.stderr.split('\n').find((l) => l.startsWith('backend: '))!;
    };
    const off = line({ RLHF_NATIVE_ENGINE: '0' });
    if (!/^backend: webgpu/.test(off)) expect(off).toMatch(/native: disabled by RLHF_NATIVE_ENGINE=0/);
    if (existsSync(engineAddonPath()) && existsSync(blasAddonPath())) {
      const on = line({});
      if (!/^backend: webgpu/.test(on)) expect(on).toMatch(/^backend: native — native \(\d+ threads?, OpenBLAS [^,]*, \S+, \d+ threads?\)/);
      expect(line({ RLHF_THREADS: '1', RLHF_BACKEND: 'native' })).toMatch(/^backend: native — native \(1 thread, OpenBLAS [^,]*, \S+, 1 thread\)/);
    }
  });
});
