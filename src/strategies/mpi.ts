/**
 * The MPI engine behind `ddp` and `zero2`: loads the N-API addon (native/mpi, built by `npm run build:mpi` against the
 * system's Open MPI), initialises MPI once per process, and wraps its collectives with a deadline so that a dead or
 * hung rank becomes an error instead of a process that waits forever.
 *
 * Process lifecycle: a clean exit (code 0) calls MPI_Finalize; any other exit (an error, a collective that timed
 * out) calls MPI_Abort, which makes mpirun stop every other rank too, so no rank is left waiting for a peer that
 * will never come.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Reductions the addon's allreduce knows. */
export type ReduceOp = 'sum' | 'max' | 'min';

/** What the compiled addon exports (native/mpi/mpi_binding.cc). */
interface MpiAddon {
  init(): { rank: number; size: number; library: string };
  finalize(): void;
  abort(code: number): void;
  failed(): boolean;
  allreduce(buf: Float32Array | Float64Array, op: ReduceOp, timeoutMs: number): void;
  reduceScatter(send: Float32Array, counts: number[], timeoutMs: number): Float32Array;
  allgather(send: Float32Array, counts: number[], timeoutMs: number): Float32Array;
  broadcast(buf: Float32Array | Float64Array, root: number, timeoutMs: number): void;
  barrier(timeoutMs: number): void;
}

/** Collectives over every rank of the job. Every rank must make the same calls in the same order. */
export interface Communicator {
  readonly rank: number;
  readonly size: number;
  /** Seconds a collective may wait for the other ranks before it throws. */
  readonly timeoutS: number;
  /** In place: every rank ends with the elementwise reduction over ranks. */
  allreduce(buf: Float32Array | Float64Array, op?: ReduceOp): void;
  /** Sum over ranks of `send`, of which this rank receives its block: `counts[rank]` elements at offset sum(counts[<rank]). */
  reduceScatter(send: Float32Array, counts: number[]): Float32Array;
  /** Every rank's block (`counts[r]` elements from rank r) concatenated in rank order. */
  allgather(send: Float32Array, counts: number[]): Float32Array;
  /** In place: every rank ends with `root`'s values. */
  broadcast(buf: Float32Array | Float64Array, root?: number): void;
  barrier(): void;
}

/** Environment variable: seconds a collective waits before declaring the job broken (default 600). */
export const MPI_TIMEOUT_ENV = 'RLHF_MPI_TIMEOUT';
/** Environment variable: path of the compiled addon, overriding native/mpi/build/Release/rlhf_mpi.node. */
export const MPI_ADDON_ENV = 'RLHF_MPI_ADDON';
const DEFAULT_TIMEOUT_S = 600;

const INSTALL_HINT =
  'install Open MPI (Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin) and build the addon with `npm run build:mpi`';

/** Where the compiled addon is looked for: src/strategies and dist/strategies both sit two levels below the root. */
export function mpiAddonPath(): string {
  const override = process.env[MPI_ADDON_ENV];
  if (override) return resolve(override);
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  return join(root, 'native', 'mpi', 'build', 'Release', 'rlhf_mpi.node');
}

/** Rank and world size from the launcher's environment (Open MPI, MPICH/Hydra, PMIx, Slurm), or null outside one. */
export function launcherWorld(env: NodeJS.ProcessEnv = process.env): { rank: number; size: number } | null {
  const pairs: [string, string][] = [
    ['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE'],
    ['PMI_RANK', 'PMI_SIZE'],
    ['PMIX_RANK', 'PMIX_SIZE'],
  ];
  for (const [r, s] of pairs) {
    if (env[r] !== undefined && env[s] !== undefined) return { rank: Number(env[r]), size: Number(env[s]) };
  }
  return null;
}

/** Seconds from RLHF_MPI_TIMEOUT, checked. */
export function mpiTimeoutSeconds(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[MPI_TIMEOUT_ENV];
  if (raw === undefined || raw === '') return DEFAULT_TIMEOUT_S;
  const s = Number(raw);
  if (!Number.isFinite(s) || s <= 0) throw new Error(`${MPI_TIMEOUT_ENV} must be a number of seconds > 0, got "${raw}"`);
  return s;
}

/** Loads the addon, or explains what to install. Does not initialise MPI. */
function loadAddon(what: string): MpiAddon {
  const file = mpiAddonPath();
  if (!existsSync(file)) {
    throw new Error(`${what} needs the MPI addon, which is not built (${file} is missing): ${INSTALL_HINT}`);
  }
  try {
    return createRequire(import.meta.url)(file) as MpiAddon;
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new Error(`${what} needs MPI, but the addon ${file} does not load (${why}): ${INSTALL_HINT}`);
  }
}

class MpiCommunicator implements Communicator {
  readonly timeoutS: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly addon: MpiAddon,
    readonly rank: number,
    readonly size: number,
    timeoutS: number,
  ) {
    this.timeoutS = timeoutS;
    this.timeoutMs = timeoutS * 1000;
  }

  allreduce(buf: Float32Array | Float64Array, op: ReduceOp = 'sum'): void {
    this.addon.allreduce(buf, op, this.timeoutMs);
  }

  reduceScatter(send: Float32Array, counts: number[]): Float32Array {
    return this.addon.reduceScatter(send, counts, this.timeoutMs);
  }

  allgather(send: Float32Array, counts: number[]): Float32Array {
    return this.addon.allgather(send, counts, this.timeoutMs);
  }

  broadcast(buf: Float32Array | Float64Array, root = 0): void {
    this.addon.broadcast(buf, root, this.timeoutMs);
  }

  barrier(): void {
    this.addon.barrier(this.timeoutMs);
  }
}

let world: MpiCommunicator | undefined;

/**
 * The job's communicator, initialising MPI on first use. `what` names the feature asking (e.g. `--strategy ddp`) in
 * the errors: addon not built, MPI not installed, or the process not started by mpirun.
 */
export function mpiWorld(what: string): Communicator {
  if (world) return world;
  const addon = loadAddon(what);
  if (!launcherWorld()) {
    throw new Error(
      `${what} runs one process per rank under MPI: start it with \`mpirun -np 2 <command> ...\` ` +
        '(add --allow-run-as-root when running as root, and --oversubscribe when there are more ranks than cores)',
    );
  }
  const timeoutS = mpiTimeoutSeconds();
  const { rank, size } = addon.init();
  world = new MpiCommunicator(addon, rank, size, timeoutS);
  process.on('exit', (code) => {
    if (code === 0 && !addon.failed()) {
      addon.finalize();
    } else {
      // Take the whole job down: peers blocked in a collective with this rank would otherwise wait for the timeout.
      process.stderr.write(`rank ${rank}: exiting with code ${code || 1}; aborting the MPI job\n`);
      addon.abort(code || 1);
    }
  });
  return world;
}

/** Whether the addon is built and loads (MPI installed); says nothing about being under mpirun. */
export function mpiAddonAvailable(): boolean {
  try {
    loadAddon('check');
    return true;
  } catch {
    return false;
  }
}
