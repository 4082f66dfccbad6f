// Hub downloads against local servers on 127.0.0.1 only (never another address): a server that accepts and never
// answers times out, a download that stalls mid-body times out, and a closed port says what to do offline.
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HUB_TIMEOUT_ENV, hubTimeoutMs, resolvePretrained, stallTimeoutFetch } from '../src/hub/hf_cache.js';

const ENV_KEYS = ['HF_HUB_CACHE', 'HF_HOME', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE', 'HF_ENDPOINT', HUB_TIMEOUT_ENV] as const;
let tmp: string;
let saved: Record<string, string | undefined>;
const servers: Server[] = [];
const sockets: Socket[] = [];

beforeEach(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'hf-net-test-'));
  saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
  process.env.HF_HUB_CACHE = path.join(tmp, 'cache');
  process.env[HUB_TIMEOUT_ENV] = '0.5';
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  for (const k of ENV_KEYS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  await rm(tmp, { recursive: true, force: true });
});

/** A TCP server on 127.0.0.1 that hands each connection to `onConnection`; resolves to its port. */
async function listen(onConnection: (s: Socket) => void): Promise<number> {
  const server = createServer((s) => {
    sockets.push(s);
    onConnection(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

describe('Hub downloads without a working network', () => {
  it('a connection accepted and never answered times out, naming the model, the cache path and HF_HUB_OFFLINE=1', async () => {
    const port = await listen(() => {}); // reads nothing, answers nothing
    process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
    const t0 = performance.now();
    const err = await resolvePretrained('someorg/some-model').then(() => null, (e: Error) => e);
    expect(performance.now() - t0).toBeLessThan(8000);
    expect(err?.message).toMatch(/cannot download someorg\/some-model@main: no answer from http:\/\/127\.0\.0\.1:\d+\/\S* for 0\.5 s \(RLHF_HUB_TIMEOUT_S\)/);
    expect(err?.message).toContain(path.join(tmp, 'cache', 'models--someorg--some-model'));
    expect(err?.message).toContain('HF_HUB_OFFLINE=1');
  }, 15_000);

  it('no server at all says it cannot reach the endpoint, with the same advice', async () => {
    const port = await listen(() => {});
    await new Promise((r) => servers.pop()!.close(r)); // the port is now closed
    process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
    const err = await resolvePretrained('gpt2').then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+ to download gpt2@main \(ECONNREFUSED/);
    expect(err?.message).toContain(path.join(tmp, 'cache', 'models--gpt2'));
    expect(err?.message).toMatch(/set HF_HUB_OFFLINE=1 to use only the cache, or pass a local model directory/);
  }, 15_000);

  it('a body that stalls after its headers times out; one that keeps moving does not', async () => {
    const port = await listen((s) => {
      s.once('data', (req) => {
        const slow = req.toString().startsWith('GET /slow');
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Type: text/plain\r\n\r\nab');
        if (!slow) return; // then silence
        // 8 more bytes, one every 0.2 s: 1.6 s in all, longer than the 0.5 s stall limit but never silent that long.
        let left = 8;
        const tick = setInterval(() => {
          s.write('x');
          if (--left === 0) clearInterval(tick);
        }, 200);
        s.once('close', () => clearInterval(tick));
      });
    });
    const timed = stallTimeoutFetch(500);
    const t0 = performance.now();
    const stalled = await timed(`http://127.0.0.1:${port}/stall`).then((r) => r.text()).then(() => null, (e: Error) => e);
    expect(stalled?.message ?? String(stalled)).toMatch(/no answer from http:\/\/127\.0\.0\.1:\d+\/stall for 0\.5 s/);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(await timed(`http://127.0.0.1:${port}/slow`).then((r) => r.text())).toBe('abxxxxxxxx');
  }, 15_000);

  it('reads RLHF_HUB_TIMEOUT_S, with a default and a clear error for nonsense', () => {
    expect(hubTimeoutMs({})).toBe(30_000);
    expect(hubTimeoutMs({ [HUB_TIMEOUT_ENV]: '2.5' })).toBe(2500);
    expect(() => hubTimeoutMs({ [HUB_TIMEOUT_ENV]: 'soon' })).toThrow(/RLHF_HUB_TIMEOUT_S=soon: expected a positive number of seconds/);
  });
});
