/** Backend choice: `auto` says why it skipped webgpu in its one line, without Dawn's native warnings on stderr. */
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';

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
});
