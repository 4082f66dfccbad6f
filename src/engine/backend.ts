/**
 * Backend choice at run time: `--backend auto|tensorflow|webgpu|native|wasm|cpu`, or the env variable RLHF_BACKEND.
 * `auto` tries tensorflow (tfjs-node-gpu, then tfjs-node, when the user installed them), webgpu (Dawn, when an adapter
 * exists), native (tensors in native memory, C++ kernels and OpenBLAS, when its addons are built), wasm, then cpu,
 * and keeps the first that passes a small forward+backward self-test against the cpu backend's numbers. It says
 * which one it took and why it skipped the others.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { tf } from './tf.js';
import { setFastTransposedProducts, setUnbatchedMatmul } from './product_forms.js';
import { installNativeMatmul, nativeBlasStatus, nativeMatmulInstalled } from './native_blas.js';
import { engineThreads, registerNativeBackend, THREADS_ENV } from './native_backend.js';
import { relativeError, selfTestValues } from './self_test.js';

export const BACKENDS = ['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];
export const BACKEND_ENV = 'RLHF_BACKEND';
/** XNNPACK threads for the wasm backend (default 1, at most 8); above 1 loads the threaded SIMD binary. */
export const WASM_THREADS_ENV = 'RLHF_WASM_THREADS';

type Log = (msg: string) => void;
/** Where bare imports in a probe child resolve from: this package's own node_modules. */
const moduleDir = dirname(fileURLToPath(import.meta.url));

/** Dynamic import that tolerates a package the user has not installed. */
async function tryImport(name: string): Promise<unknown> {
  return import(name);
}

async function registerTensorflow(): Promise<string> {
  const errors: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await tryImport(pkg);
      if (await tf.setBackend('tensorflow')) return pkg;
      errors.push(`${pkg} loaded but its backend did not initialise`);
    } catch (e) {
      errors.push(`${pkg} not usable (${firstLine(e)})`);
    }
  }
  throw new Error(errors.join('; '));
}

/**
 * Dawn prints a warning with its build machine's path on stderr for every graphics API it cannot load (no Vulkan on
 * a machine without a GPU), and Node cannot silence a native library's stderr. So the adapter is first looked for
 * in a short child process whose output is kept; only when one exists is Dawn loaded here.
 */
function webgpuAdapterExists(): boolean {
  const probe = "const m = await import('webgpu'); const a = await m.create([]).requestAdapter(); process.stdout.write(a ? 'yes' : 'no');";
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8', timeout: 20_000, cwd: moduleDir });
  if (r.status !== 0 && /ERR_MODULE_NOT_FOUND/.test(r.stderr ?? '')) throw new Error('not installed');
  if (r.error || r.status !== 0) throw new Error(r.error ? r.error.message : `probe exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').pop()}`);
  return r.stdout.trim() === 'yes';
}

async function registerWebgpu(): Promise<string> {
  if (!webgpuAdapterExists()) throw new Error('no adapter');
  const mod = (await tryImport('webgpu')) as { create: (o: string[]) => unknown; globals: Record<string, unknown> };
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create([]) as { requestAdapter: () => Promise<unknown> };
  const nav = (globalThis as { navigator?: object }).navigator;
  // Node 21+ has a navigator object (read-only getters); define the property rather than replace the object.
  if (nav) Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
  else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter (no GPU or no Vulkan driver)');
  await tryImport('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('webgpu backend did not initialise');
  return 'webgpu (Dawn)';
}

/**
 * XNNPACK threads requested for wasm: RLHF_WASM_THREADS, else 1. Two threads nearly doubled a 1024³ product on an
 * idle 2-core machine (17 → 35 GFLOP/s) but ran slower than one whenever other processes shared the cores (the
 * pool synchronises after every product), so more than one is opt-in.
 */
function requestedWasmThreads(): number {
  const env = process.env[WASM_THREADS_ENV];
  if (env === undefined || env === '') return 1;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${WASM_THREADS_ENV} must be a positive integer (got "${env}")`);
  return Math.min(n, 8);
}

let wasmThreadCount = 1;
/** Threads the wasm backend's matrix products run on (1 until wasm is initialised). */
export function wasmThreads(): number {
  return wasmThreadCount;
}

/**
 * tfjs-backend-wasm ships a threaded SIMD binary but disables it under Node (tfjs issue #3830): it hands emscripten
 * its pthread worker as a `blob:` URL and the module script as a Blob, which Node's worker_threads cannot load.
 * This lets Node run it: the Worker class emscripten installs is wrapped so a `blob:` worker is started from the
 * worker source as eval'd code and its `load` message points at the module script on disk. XNNPACK also caps its
 * pool at half the logical cores (it assumes hyper-threading), so os.cpus() reports twice the wanted count while
 * the backend initialises. Returns a function that undoes the temporary parts.
 */
function prepareThreadedWasm(threads: number): () => void {
  const require = createRequire(import.meta.url);
  const workerSource = (require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as { wasmWorkerContents: string })
    .wasmWorkerContents.replace(/\n/g, '\\n'); // as tfjs escapes it before making its blob
  const moduleScript = require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js');
  type WorkerCtor = new (file: string, opts?: Record<string, unknown>) => { postMessage(m: unknown, t?: unknown): void };
  let wrapped: WorkerCtor | undefined;
  Object.defineProperty(globalThis, 'Worker', {
    configurable: true,
    get: () => wrapped,
    set: (NodeWorker: WorkerCtor) => {
      wrapped = class extends NodeWorker {
        constructor(file: string, opts?: Record<string, unknown>) {
          if (typeof file === 'string' && file.startsWith('blob:')) super(workerSource, { ...opts, eval: true });
          else super(file, opts);
          (this as unknown as { unref(): void }).unref();
        }
        /** XNNPACK's pool threads live for the whole process: they must not keep Node from exiting. */
        ref(): void {}
        override postMessage(msg: unknown, transfer?: unknown): void {
          const m = msg as { cmd?: string; urlOrBlob?: unknown };
          super.postMessage(m?.cmd === 'load' && typeof m.urlOrBlob !== 'string' ? { ...m, urlOrBlob: moduleScript } : msg, transfer);
        }
      };
    },
  });
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  const realCpus = os.cpus;
  os.cpus = () => Array.from({ length: 2 * threads }, () => realCpus()[0]!);
  return () => {
    os.cpus = realCpus;
    // Keep the wrapped class for workers emscripten starts later, as a plain global.
    Object.defineProperty(globalThis, 'Worker', { configurable: true, writable: true, value: wrapped });
  };
}

async function registerWasm(): Promise<string> {
  const wasm = (await tryImport('@tensorflow/tfjs-backend-wasm')) as { setThreadsCount(n: number): void; getThreadsCount(): number };
  const threads = requestedWasmThreads();
  if (threads > 1 && tf.findBackend('wasm') === null) {
    const restore = prepareThreadedWasm(threads);
    wasm.setThreadsCount(threads);
    try {
      if (!(await tf.setBackend('wasm'))) throw new Error('threaded wasm backend did not initialise');
    } catch (e) {
      throw new Error(`${firstLine(e)}; set ${WASM_THREADS_ENV}=1 for the single-threaded binary`);
    } finally {
      restore();
    }
  } else if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not initialise');
  wasmThreadCount = wasm.getThreadsCount();
  // Matrix products through OpenBLAS when its addon is built (native_blas.ts); the status says which or why not.
  const what = `wasm (XNNPACK, SIMD, ${wasmThreadCount} thread${wasmThreadCount > 1 ? 's' : ''}`;
  return installNativeMatmul() ? `${what}) + ${nativeBlasStatus()}` : `${what}; ${nativeBlasStatus()})`;
}

async function registerNative(): Promise<string> {
  const what = registerNativeBackend(engineThreads());
  if (!(await tf.setBackend('native'))) throw new Error('native backend did not initialise');
  return what;
}

async function registerCpu(): Promise<string> {
  await tf.setBackend('cpu');
  return 'cpu (plain JavaScript)';
}

function firstLine(e: unknown): string {
  if ((e as { code?: string })?.code === 'ERR_MODULE_NOT_FOUND') return 'not installed';
  return String((e as Error)?.message ?? e).split('\n')[0]!;
}

let active: string | null = null;

/**
 * Initialises and returns the backend name actually in use. `threads` (the CLIs' `--threads`) sets RLHF_THREADS:
 * the native backend's kernel threads and, unless RLHF_BLAS_THREADS says otherwise, OpenBLAS's.
 */
export async function initBackend(choice: string = process.env[BACKEND_ENV] ?? 'auto', log: Log = (m) => console.error(m), threads?: number): Promise<string> {
  if (!(BACKENDS as readonly string[]).includes(choice)) {
    throw new Error(`unknown backend "${choice}" (choose one of: ${BACKENDS.join(', ')})`);
  }
  if (threads !== undefined) {
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads must be a positive integer (got ${threads})`);
    process.env[THREADS_ENV] = String(threads);
  }
  await tf.setBackend('cpu');
  const reference = selfTestValues();
  // auto tries native before wasm: with the fused training kernels (native_fused.ts) and the decode kernel
  // (native_decode.ts) it trains and generates at least as fast as wasm + OpenBLAS at the bench shapes (README,
  // Speed), and it has no 4 GiB heap. wasm stays the fallback that needs no build.
  const candidates: Exclude<BackendChoice, 'auto'>[] = choice === 'auto' ? ['tensorflow', 'webgpu', 'native', 'wasm', 'cpu'] : [choice as Exclude<BackendChoice, 'auto'>];
  const register = { tensorflow: registerTensorflow, webgpu: registerWebgpu, native: registerNative, wasm: registerWasm, cpu: registerCpu };
  const skipped: string[] = [];
  for (const name of candidates) {
    try {
      const what = await register[name]();
      await tf.ready();
      const err = relativeError(selfTestValues(), reference);
      if (!Number.isFinite(err) || err > 1e-3) throw new Error(`self-test disagrees with the cpu backend (relative error ${err.toExponential(2)})`);
      // XNNPACK and the JS kernels are fastest on untransposed 2-D products; GPU backends and OpenBLAS (wasm + addon,
      // native) batch natively (OpenBLAS batched: GPT-2 124M B8×T128 step 10.3 s vs 10.9 s as 2-D loops, tiny-chat
      // 1.8k vs 1.5k tok/s).
      setUnbatchedMatmul(name === 'cpu' || (name === 'wasm' && !nativeMatmulInstalled()));
      // Transposed operands: free in OpenBLAS and GPU kernels, ~10× slower than plain ones in XNNPACK and the JS kernels.
      setFastTransposedProducts(name === 'wasm' ? nativeMatmulInstalled() : name !== 'cpu');
      active = name;
      log(`backend: ${name} — ${what}${skipped.length ? ` (skipped: ${skipped.join('; ')})` : ''}`);
      return name;
    } catch (e) {
      skipped.push(`${name}: ${firstLine(e)}`);
      if (choice !== 'auto') throw new Error(`backend ${name} is not usable: ${firstLine(e)}`);
    }
  }
  throw new Error(`no backend passed its self-test: ${skipped.join('; ')}`);
}

export function activeBackend(): string {
  return active ?? tf.getBackend();
}
