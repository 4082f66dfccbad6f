/**
 * Group-relative advantages: G completions per prompt, rows grouped by prompt (rows 0..G−1 prompt 0, …). Each
 * estimator is one branch of `computeAdvantages`; tested against TRL 1.13 / OpenRLHF values
 * (test/grpo_functional.test.ts, test/fixtures/grpo/expected.json).
 */

export type AdvantageKind = 'grpo' | 'dr_grpo' | 'rloo' | 'reinforce_pp';
export const ADVANTAGE_KINDS: readonly AdvantageKind[] = ['grpo', 'dr_grpo', 'rloo', 'reinforce_pp'];

/** How GRPO scales centred rewards (TRL's scale_rewards): the group's std, the batch's std, or not at all. */
export type RewardScaling = 'group' | 'batch' | 'none';

const mean = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / xs.length;
/** Bessel-corrected standard deviation (torch.std's default); 0 for fewer than two values. */
export const stdUnbiased = (xs: number[]): number => {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, v) => a + (v - m) ** 2, 0) / (xs.length - 1));
};

function groups(rewards: number[], G: number): number[][] {
  if (G < 1 || rewards.length % G !== 0) throw new Error(`advantages: ${rewards.length} rewards do not split into groups of ${G}`);
  return Array.from({ length: rewards.length / G }, (_, i) => rewards.slice(i * G, (i + 1) * G));
}

/** A_i = (r_i − mean_group) / (std + 1e-4), std per group, per batch, or 1 (TRL GRPOTrainer, `scale_rewards`). */
export function groupAdvantages(rewards: number[], G: number, scaling: RewardScaling): number[] {
  const batchStd = stdUnbiased(rewards);
  return groups(rewards, G).flatMap((g) => {
    const m = mean(g);
    const s = scaling === 'group' ? stdUnbiased(g) : scaling === 'batch' ? batchStd : null;
    return g.map((r) => (s === null ? r - m : (r - m) / (s + 1e-4)));
  });
}

/** RLOO (Ahmadian et al. 2024): A_i = r_i − mean of the group's other G−1 rewards. */
export function rlooAdvantages(rewards: number[], G: number): number[] {
  if (G < 2) throw new Error('rloo: needs --num_generations ≥ 2 (a leave-one-out baseline)');
  return groups(rewards, G).flatMap((g) => {
    const sum = g.reduce((a, v) => a + v, 0);
    return g.map((r) => r - (sum - r) / (G - 1));
  });
}

/**
 * Sums over every rank's share of a batch (a strategy's all-reduce with 'sum'); the identity in one process. Every
 * rank must call it the same number of times, with the same keys.
 */
export type SumOverRanks = (local: Record<string, number>) => Record<string, number>;

const oneProcess: SumOverRanks = (local) => local;

/**
 * REINFORCE++ (Hu 2025, OpenRLHF): per-token rewards −β·k1(old, ref) plus the sequence reward on the last completion
 * token, returns summed backwards with γ = 1, then whitened over every completion token of the batch (mean 0,
 * Bessel-corrected variance 1, eps 1e-8). Masked positions are 0. Rows: [B][N]. Under several ranks the batch is
 * the global one: the mean, then the sum of squared deviations, are summed over ranks by `sumOverRanks` (two passes,
 * as in one process, so the result does not depend on how the rows are split).
 */
export function reinforcePlusPlusAdvantages(
  rewards: number[], oldLogps: number[][], refLogps: number[][] | null, mask: number[][], klCoef: number, sumOverRanks: SumOverRanks = oneProcess,
): number[][] {
  const returns = rewards.map((r, b) => {
    const m = mask[b]!;
    const last = m.lastIndexOf(1);
    const row = new Array<number>(m.length).fill(0);
    let acc = 0;
    for (let t = m.length - 1; t >= 0; t--) {
      if (!m[t]) continue;
      const kl = refLogps ? oldLogps[b]![t]! - refLogps[b]![t]! : 0;
      acc += -klCoef * kl + (t === last ? r : 0);
      row[t] = acc;
    }
    return row;
  });
  const all = returns.flatMap((row, b) => row.filter((_, t) => mask[b]![t]));
  const { sum, count } = sumOverRanks({ sum: all.reduce((a, x) => a + x, 0), count: all.length });
  if (!count) return returns;
  const mu = sum! / count;
  const { squares } = sumOverRanks({ squares: all.reduce((a, x) => a + (x - mu) ** 2, 0) });
  const v = count > 1 ? squares! / (count - 1) : 0;
  const inv = 1 / Math.sqrt(v + 1e-8);
  return returns.map((row, b) => row.map((x, t) => (mask[b]![t] ? (x - mu) * inv : 0)));
}

export interface AdvantageInput {
  rewards: number[];
  G: number;
  /** For reinforce_pp: per-token old / reference log-probs and the completion mask, [B][N]; ref null with β 0. */
  oldLogps?: number[][];
  refLogps?: number[][] | null;
  mask?: number[][];
  /** β of reinforce_pp's KL-in-reward. */
  klCoef?: number;
  /** For grpo: TRL's scale_rewards (default group). */
  scaling?: RewardScaling;
  /** For reinforce_pp under several ranks: sums over the ranks, so that whitening covers the whole batch. */
  sumOverRanks?: SumOverRanks;
}

/** Per-token advantages [B][N] (sequence advantages broadcast over each row's tokens; 0 where the mask is 0). */
export function computeAdvantages(kind: AdvantageKind, x: AdvantageInput): number[][] {
  const mask = x.mask ?? x.rewards.map(() => [1]);
  const broadcast = (a: number[]) => a.map((v, b) => mask[b]!.map((m) => (m ? v : 0)));
  switch (kind) {
    case 'grpo': // Shao et al. 2024 (DeepSeekMath), eq. in §4.1.2: group mean and std
      return broadcast(groupAdvantages(x.rewards, x.G, x.scaling ?? 'group'));
    case 'dr_grpo': // Liu et al. 2025 (Dr. GRPO, "Understanding R1-Zero-Like Training"): no std division
      return broadcast(groupAdvantages(x.rewards, x.G, 'none'));
    case 'rloo': // Ahmadian et al. 2024, "Back to Basics": leave-one-out baseline
      return broadcast(rlooAdvantages(x.rewards, x.G));
    case 'reinforce_pp': // Hu 2025, "REINFORCE++": KL in the reward, batch-wide whitening
      // Without a reference (β 0) there is no KL term, and so no need for the rollout's log-probs.
      if (x.refLogps && !x.oldLogps) throw new Error('reinforce_pp: the KL in the reward needs the rollout log-probs');
      return reinforcePlusPlusAdvantages(x.rewards, x.oldLogps ?? mask.map((r) => r.map(() => 0)), x.refLogps ?? null, mask, x.klCoef ?? 0, x.sumOverRanks);
  }
}

export interface GroupRewardStats {
  /** std of all rewards of the batch (TRL's reward_std). */
  rewardStd: number;
  /** Share of groups whose rewards are all equal (their grpo advantages are 0: no signal). */
  fracZeroStd: number;
  /** Per group: whether its rewards are all equal. */
  zeroStd: boolean[];
}

export function groupRewardStats(rewards: number[], G: number): GroupRewardStats {
  const zeroStd = groups(rewards, G).map((g) => g.every((r) => Math.abs(r - g[0]!) < 1e-12));
  return { rewardStd: stdUnbiased(rewards), fracZeroStd: zeroStd.filter(Boolean).length / zeroStd.length, zeroStd };
}
