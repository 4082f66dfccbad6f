/**
 * The native backend's tensors live outside any wasm heap: a 4.9 GB table (past the 4 GiB wasm32 ceiling) is
 * gathered from, sliced and multiplied at rows beyond its first 4 GiB, tf.memory() counts it, and disposal frees it.
 * The table's pages are never all written (only the rows set here), so the test needs little real memory; it is
 * still skipped on machines with under 16 GiB of RAM, and when the addons are not built.
 */
import { describe, it, expect } from 'vitest';
import os from 'node:os';
import { tf } from '../src/engine/tf.js';
import { initBackend } from '../src/engine/backend.js';
import { nativeBackendUnavailable } from '../src/engine/native_backend.js';
import { nativeBlasAvailable } from '../src/engine/native_blas.js';

const GiB = 2 ** 30;
const skip = nativeBackendUnavailable() || (nativeBlasAvailable() ? '' : 'OpenBLAS addon not built') || (os.totalmem() < 16 * GiB ? 'under 16 GiB of RAM' : '');

describe.skipIf(skip !== '')('native backend beyond 4 GiB', () => {
  it('gathers, slices and multiplies rows past the first 4 GiB of one 4.9 GB tensor; disposal frees it', async () => {
    await initBackend('native', () => {});
    const rows = 300_000;
    const C = 4096; // 300000 × 4096 float32 = 4.9 GB
    const values = new Float32Array(rows * C);
    const last = rows - 1;
    for (let c = 0; c < C; c++) values[last * C + c] = c % 7; // a row at byte offset ~4.9e9
    values[(rows - 2) * C + 5] = 2;
    const before = tf.memory().numBytes;
    const table = tf.tensor2d(values, [rows, C]);
    expect(tf.memory().numBytes - before).toBe(rows * C * 4);
    const got = tf.tidy(() => {
      const g = tf.gather(table, tf.tensor1d([last, 0, rows - 2], 'int32')); // (3, C)
      const s = tf.slice(table, [rows - 2, 0], [2, C]); // (2, C)
      const p = tf.matMul(s, tf.ones([C, 1])); // row sums through OpenBLAS
      return [Array.from(tf.sum(g, 1).dataSync()), Array.from(p.dataSync())];
    });
    const rowSum = Array.from({ length: C }, (_, c) => c % 7).reduce((a, b) => a + b, 0);
    expect(got[0]).toEqual([rowSum, 0, 2]);
    expect(got[1]).toEqual([2, rowSum]);
    table.dispose();
    expect(tf.memory().numBytes).toBe(before);
  });
});
