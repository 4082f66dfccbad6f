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

  it('takes native before wasm when its addons are built (else wasm); native by name, with its threads', () => {
    const run = (choice: string, env: Record<string, string>) => {
      const script = `import('./src/engine/backend.ts').then((m) => m.initBackend('${choice}'));`;
      const r = spawnSync('npx', ['tsx', '--eval', script], { encoding: 'utf8', env: { ...process.env, ...env } });
      return { status: r.status, stderr: r.stderr, line: r.stderr.split('\n').find((l) => l.startsWith('backend: ')) ?? '' };
    };
    const auto = run('auto', {});
    expect(auto.status, auto.stderr).toBe(0);
    const built = existsSync(engineAddonPath()) && existsSync(blasAddonPath());
    expect(auto.line).toMatch(built ? /^backend: (webgpu|native)/ : /^backend: (webgpu|wasm)/);
    const off = run('native', { RLHF_NATIVE_ENGINE: '0' });
    expect(off.status).not.toBe(0);
    expect(off.stderr).toMatch(/disabled by RLHF_NATIVE_ENGINE=0/);
    if (built) {
      const on = run('native', {});
      expect(on.status, on.stderr).toBe(0);
      expect(on.line).toMatch(/^backend: native — native \(\d+ threads?, OpenBLAS [^,]*, \S+, \d+ threads?\)/);
      expect(run('native', { RLHF_THREADS: '1' }).line).toMatch(/^backend: native — native \(1 thread, OpenBLAS [^,]*, \S+, 1 thread\)/);
    }
  });
});
