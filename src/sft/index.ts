/** Stage 1, supervised fine-tuning: `runSft(config)` is the whole `train_sft` command. */
import { initBackend } from '../engine/backend.js';
import { createStrategy } from '../strategies/strategy.js';
import { resolveSftConfig, validateSftConfig, type SftConfigInput } from './config.js';
import { trainSft, type SftResult, type SftRunOptions } from './trainer.js';

export * from './config.js';
export * from './data.js';
export * from './from_config.js';
export { SftTrainer, trainSft, type EvalResult, type SftResult, type SftRunOptions, type TrainStepResult } from './trainer.js';

/** Checks the config, picks the backend, trains, saves. Bad flags fail before the backend starts. */
export async function runSft(input: SftConfigInput, options: SftRunOptions = {}): Promise<SftResult> {
  const config = resolveSftConfig(input);
  validateSftConfig(config);
  createStrategy(config.strategy);
  await initBackend(config.backend, options.log);
  return trainSft(config, options);
}
