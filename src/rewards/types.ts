/**
 * One interface for every reward source (built-in verifiable rewards, user modules, reward models), modelled on
 * TRL's reward functions: a batch of prompts and completions in, one number per completion out, `null` meaning
 * "no reward for this sample" (TRL's None: left out of that function's mean, counted as 0 in the weighted sum).
 */

export interface RewardBatch {
  /** The rendered prompts, as the policy saw them. */
  prompts: string[];
  /** The decoded completions (special tokens skipped). */
  completions: string[];
  /** The dataset's other columns, one array per column (aligned with the completions), plus `completion_ids`. */
  extra: Record<string, unknown[]>;
  /** The prompts' token ids (no padding) and the completions' ids through EOS, for reward models. */
  promptIds: number[][];
  completionIds: number[][];
}

export interface RewardSource {
  /** The name in metrics (`rewards/<name>/mean`). */
  readonly name: string;
  score(batch: RewardBatch): Promise<(number | null)[]>;
  dispose?(): void;
}

/** A user's reward function, as a module exports it. */
export type UserRewardFunction = (prompts: string[], completions: string[], extra: Record<string, unknown[]>) => (number | null)[] | Promise<(number | null)[]>;
