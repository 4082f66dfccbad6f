/** Group-relative online RL: `runGrpo(config)` runs a whole stage; the pieces are exported for tests and tools. */
export * from './advantages.js';
export * from './loss.js';
export * from './config.js';
export * from './data.js';
export * from './models.js';
export * from './update.js';
export * from './evaluate.js';
export * from './trainer.js';
