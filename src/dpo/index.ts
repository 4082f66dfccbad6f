/** Direct preference optimization (DPO, IPO, hinge, robust, cDPO, SimPO, ORPO, KTO): config, losses, data, trainer. */
export * from './config.js';
export * from './losses.js';
export * from './data.js';
export * from './load_data.js';
export * from './objective.js';
export * from './trainer.js';
