/** Stage 2, the reward model: config, losses, model, preference datasets, trainer, and loading a saved one. */
export * from './config.js';
export * from './losses.js';
export * from './model.js';
export * from './dataset.js';
export * from './load.js';
export * from './trainer.js';
