/** What online RL shares (PPO and GRPO): sampling, per-token log-probs, KL estimators, masked statistics, the policy. */
export * from './masked.js';
export * from './kl.js';
export * from './logprobs.js';
export * from './sample.js';
export * from './policy.js';
export * from './prompts.js';
