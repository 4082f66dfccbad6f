/** Reward sources behind one interface: built-in verifiable rewards, user modules, reward models. */
export * from './types.js';
export * from './builtins.js';
export * from './user_module.js';
export * from './reward_model.js';
export * from './combine.js';
