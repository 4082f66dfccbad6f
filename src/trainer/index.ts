/** What every stage trainer shares: optimizer, schedules, gradient helpers, logging, checkpoints, progress, signals. */
export * from './adamw.js';
export * from './schedule.js';
export * from './grad_utils.js';
export * from './metrics.js';
export * from './checkpoint_io.js';
export * from './progress.js';
export * from './interrupt.js';
export * from './final_save.js';
export * from './nonfinite_guard.js';
