/** Stage 3: PPO. `runPpo(config)` runs a whole stage; the pieces are exported for tests and tools. */
export * from './config.js';
export * from './functional.js';
export * from './kl_controller.js';
export * from './data.js';
export * from './models.js';
export * from './experience.js';
export * from './replay_buffer.js';
export * from './checkpoint.js';
export * from './train_step.js';
export * from './trainer.js';
