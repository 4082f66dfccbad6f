/**
 * The native backend's free list of output buffers: reused by size class, bounded by its ceiling, and when full the
 * buffers free the longest are dropped first (a new phase's sizes replace an old phase's instead of being refused).
 */
import { describe, it, expect } from 'vitest';
import { BufferPool } from '../src/engine/native_backend.js';

describe('native buffer pool', () => {
  it('reuses a released buffer of the same size class, and only once nothing views it', () => {
    const pool = new BufferPool(1 << 20);
    const a = pool.take(1000);
    pool.retain(a);
    pool.retain(a); // two tensors view it
    pool.release(a);
    expect(pool.pooledBytes()).toBe(0);
    pool.release(a);
    expect(pool.pooledBytes()).toBe(a.byteLength);
    expect(pool.take(990)).toBe(a); // same size class (≤ 25% apart)
    expect(pool.pooledBytes()).toBe(0);
  });

  it('stays under its ceiling by dropping the buffers free the longest', () => {
    const pool = new BufferPool(1000);
    const held = (b: ArrayBuffer) => (pool.retain(b), b);
    const a = held(pool.take(256));
    const b = held(pool.take(512));
    pool.release(a);
    pool.release(b);
    expect(pool.pooledBytes()).toBe(768);
    const c = held(pool.take(400)); // a new size class (448 bytes): no free buffer fits it
    expect(c).not.toBe(a);
    expect(c).not.toBe(b);
    pool.release(c); // 768 + 448 > 1000: `a`, free the longest, goes
    expect(pool.pooledBytes()).toBe(512 + 448);
    expect(pool.take(256)).not.toBe(a);
    expect(pool.take(512)).toBe(b);
    expect(pool.take(400)).toBe(c);
    const huge = held(pool.take(4096));
    pool.release(huge); // larger than the whole ceiling: never pooled
    expect(pool.pooledBytes()).toBe(0);
  });
});
