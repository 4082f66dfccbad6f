/** Strategies: where models and optimizer updates live across processes (naive, ddp, zero2 over MPI). */
export * from './strategy.js';
export * from './sharding.js';
export * from './flat_shards.js';
export { mpiWorld, mpiAddonAvailable, mpiAddonPath, launcherWorld, mpiTimeoutSeconds, MPI_TIMEOUT_ENV, MPI_ADDON_ENV } from './mpi.js';
export type { Communicator, ReduceOp } from './mpi.js';
export { DdpStrategy } from './ddp.js';
export { Zero2Strategy, ZeroShardedUpdate } from './zero2.js';
