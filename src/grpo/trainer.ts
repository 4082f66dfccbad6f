/**
 * The GRPO trainer. `GrpoTrainer.create` validates the config and loads models, rewards and prompts (nothing is
 * written before it succeeds); `train()` runs steps:
 *   1. rollout     batchSize prompts × numGenerations completions each (src/rollout: KV cache, EOS per row)
 *   2. rewards     every reward function and reward model scores the completions; weighted, null-aware sum
 *   3. log-probs   of the rollout policy (when numIterations > 1, or for REINFORCE++'s KL) and of the reference
 *                  (beta > 0), one forward each in micro-batches, no gradient
 *   4. advantages  grpo / dr_grpo / rloo / reinforce_pp (advantages.ts); --filter_zero_std drops equal-reward groups
 *   5. update      numIterations AdamW steps on the batch, each accumulated over micro-batches (loss.ts)
 *   6. check, log  NonFiniteGuard on the step's numbers and weights; TRL's metric names (below) every
 *                  --logging_steps, sample completions with their rewards
 *   7. evaluate    with --eval_dataset: greedy completions of the held-out prompts scored by the same rewards
 *                  (eval/reward, eval/accuracy, eval/rewards/<fn>/mean) every --eval_steps and at the end
 *   8. save        checkpoints every --save_steps (pruned to --save_total_limit), --save_best, Ctrl-C, the final model
 *
 * Metrics per step: reward, reward_std, rewards/<fn>/mean, rewards/<fn>/std, frac_reward_zero_std,
 * completions/mean_length, completions/min_length, completions/max_length, completions/clipped_ratio (share that hit
 * --max_new_tokens without EOS), kl (beta > 0), entropy, clip_ratio/low_mean, clip_ratio/high_mean,
 * clip_ratio/region_mean, policy_loss, train/lr, train/grad_norm, train/kept_groups, time/generate_s,
 * time/score_s, time/update_s, time/step_s, time/new_tokens_per_s, time/update_tokens_per_s.
 */
import { join, resolve } from 'node:path';
import { tf } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { resolvePromptTemplate } from '../data/templates/index.js';
import type { BatchLoader } from '../data/batching.js';
import { createStrategy, type Strategy } from '../strategies/strategy.js';
import { Optimization } from '../trainer/optimization.js';
import { readOptimizerState, saveCheckpoint, saveFinalCheckpoint } from '../trainer/stage_checkpoint.js';
import { readTrainerState, resumeMismatches, type TrainerState } from '../trainer/checkpoint_io.js';
import { MetricsLogger } from '../trainer/metrics.js';
import { TrainingProgress } from '../trainer/progress.js';
import { onInterrupt, stepBoundary, type InterruptFlag } from '../trainer/interrupt.js';
import { recoverRunDirs } from '../trainer/final_save.js';
import { NonFiniteGuard } from '../trainer/nonfinite_guard.js';
import { LoopControls, totalStepsFor } from '../trainer/loop_controls.js';
import { scheduleFor } from '../trainer/schedule_config.js';
import { perRankShare } from '../trainer/batch_size.js';
import { answerLogProbs, referenceLogProbs } from '../rollout/logprobs.js';
import { endedWithEos, sampleRollouts, type Rollouts } from '../rollout/sample.js';
import { trainableParams } from '../rollout/policy.js';
import { nanStats, RewardSet } from '../rewards/combine.js';
import type { RewardBatch } from '../rewards/types.js';
import { computeAdvantages, groupRewardStats, type SumOverRanks } from './advantages.js';
import { defaultGrpoBestMetric, needsReference, resolveGrpoConfig, type GrpoConfig, type GrpoConfigInput } from './config.js';
import { evaluatePrompts } from './evaluate.js';
import { grpoPromptLoader, prepareGrpoPrompts, repeatAndPad, type GrpoPrompt } from './data.js';
import { loadGrpoModels, type GrpoModels } from './models.js';
import { chunkTensors, grpoUpdate, rowChunks, type ScoredBatch } from './update.js';

export type { ScoredBatch } from './update.js';

export const DEFAULT_PROMPT_TEMPLATE = 'alpaca';
/** Settings a resumed run must keep: they fix which prompts each step takes. */
const RESUME_FIXED_FIELDS = ['batchSize', 'dataset', 'maxDatasetsSize', 'seed'] as const;
const OPTIMIZER_NAME = 'policy';

export interface GrpoRunOptions {
  log?: (msg: string) => void;
  interrupt?: InterruptFlag;
  progressBar?: boolean;
  /** Called after each step's update and log, before any checkpoint. */
  onStep?: (step: number, metrics: Record<string, number>) => void;
}

export interface GrpoResult {
  history: Record<string, number>[];
  steps: number;
  interrupted: boolean;
  savedTo: string;
}

/** GRPO's own resume state beside the common TrainerState fields (global_step counts steps). */
export type GrpoTrainerState = TrainerState & { grpo: { prompt_template: string } };

const seconds = () => performance.now() / 1000;
const sum = (xs: number[]) => xs.reduce((a, v) => a + v, 0);

/** Per-step metrics --metric_for_best can name without --eval_dataset (besides rewards/<fn>/mean). */
const STEP_BEST_METRICS = ['reward', 'reward_std', 'frac_reward_zero_std', 'completions/mean_length', 'completions/clipped_ratio', 'policy_loss', 'entropy'];

export class GrpoTrainer {
  private readonly opt: Optimization;
  /** --eval_steps, --logging_steps, --save_steps, --save_total_limit, --save_best (src/trainer/loop_controls.ts). */
  readonly controls: LoopControls;
  private step = 0;
  private readonly logHistory: Record<string, number | null>[] = [];
  private readonly eosTokenId: number | null;
  private readonly padTokenId: number;

  private constructor(
    readonly config: GrpoConfig,
    private readonly models: GrpoModels,
    private readonly rewards: RewardSet,
    private readonly strategy: Strategy,
    private readonly loader: BatchLoader<GrpoPrompt, GrpoPrompt[]>,
    readonly templateName: string,
    readonly totalSteps: number,
    private readonly log: (msg: string) => void,
    private readonly opts: GrpoRunOptions,
    /** Held-out prompts (this rank's share), or none without --eval_dataset. */
    private readonly evalPrompts: GrpoPrompt[] = [],
  ) {
    const tok = models.tokenizer;
    this.eosTokenId = tok.eosTokenId ?? models.policy.config.eosTokenId;
    this.padTokenId = tok.padTokenId ?? models.policy.config.padTokenId ?? this.eosTokenId ?? 0;
    // The schedule counts optimizer steps: numIterations per GRPO step.
    this.opt = new Optimization(trainableParams(models.policy), {
      lr: config.lr, weightDecay: config.weightDecay, gradClip: config.gradClip, accumulationSteps: 1, ...scheduleFor(config, totalSteps * config.numIterations),
    }, strategy);
    const perFn = rewards.names.map((n) => `rewards/${n}/mean`);
    this.controls = new LoopControls({ ...config, metricForBest: config.metricForBest ?? defaultGrpoBestMetric(config) }, {
      savePath: config.savePath, totalSteps, resumeDir: config.resume, stage: 'train_grpo', log,
      evalMetrics: config.evalDataset ? ['eval/reward', 'eval/accuracy', ...perFn.map((k) => `eval/${k}`)] : [...STEP_BEST_METRICS, ...perFn],
    });
  }

  static async create(input: GrpoConfigInput | GrpoConfig, opts: GrpoRunOptions = {}): Promise<GrpoTrainer> {
    const c = resolveGrpoConfig(input);
    const strategy = createStrategy(c.strategy);
    const log = strategy.isMain() ? (opts.log ?? ((m: string) => process.stderr.write(m + '\n'))) : () => {};
    if (c.globalBatchSize !== undefined) {
      c.batchSize = perRankShare(c.globalBatchSize, strategy.worldSize, '--global_batch_size');
      log(`global batch ${c.globalBatchSize} prompts = ${c.batchSize} per rank × ${strategy.worldSize} rank(s)`);
    }
    let state: GrpoTrainerState | null = null;
    // A crash mid-save is finished or undone before anything is read (main rank, then a barrier).
    await recoverRunDirs(strategy, [c.savePath, c.resume], log);
    if (c.resume) {
      state = (await readTrainerState(c.resume)) as GrpoTrainerState;
      if (!state.grpo) throw new Error(`${c.resume}/trainer_state.json: no "grpo" state, so it was not written by train_grpo`);
      const changed = resumeMismatches(state, c as unknown as Record<string, unknown>, RESUME_FIXED_FIELDS, strategy.worldSize);
      if (changed.length) {
        throw new Error(`--resume ${c.resume}: these options differ from the run that wrote it, so its data position does not apply: ` +
          changed.map((m) => `${m.field} was ${m.was}, now ${m.now}`).join('; '));
      }
      const was = state.args.pretrain;
      if (typeof was === 'string' && resolve(was) !== resolve(c.pretrain)) log(`note: ${c.resume} was trained with --pretrain ${was}, now ${c.pretrain}`);
    }
    const models = await loadGrpoModels(c, c.resume);
    let rewards: RewardSet | null = null;
    try {
      const longest = c.maxPromptLength + c.maxNewTokens;
      if (longest > models.policy.config.maxPositions) {
        throw new Error(`prompt + completion can reach ${longest} tokens but the model has ${models.policy.config.maxPositions} positions: lower --max_prompt_length or --max_new_tokens`);
      }
      rewards = await RewardSet.load({ ...c, rmPaths: c.rmPaths }, models.tokenizer);
      // --prompt_template, else the SFT directory's recorded template, else the model's chat template, else alpaca;
      // a resumed run keeps the template it was trained with
      const { template, note } = resolvePromptTemplate(state?.grpo.prompt_template ?? c.promptTemplate, models.tokenizer, DEFAULT_PROMPT_TEMPLATE, models.pretrainDir);
      const templateName = template.name;
      log(note);
      const promptOpts = { template, maxPromptLength: c.maxPromptLength, column: c.promptColumn, skipBadRecords: c.skipBadRecords };
      const data = await prepareGrpoPrompts(c.dataset, models.tokenizer, { ...promptOpts, maxRecords: c.maxDatasetsSize || undefined });
      if (data.skipped) log(`prompts: skipped ${data.skipped} bad record(s), e.g. ${data.skippedExamples[0]}`);
      if (data.truncated) log(`prompts: ${data.truncated} longer than --max_prompt_length ${c.maxPromptLength} lost their beginning`);
      const loader = grpoPromptLoader(data.prompts, c.batchSize, c.seed, strategy.createLoader.bind(strategy));
      const totalSteps = totalStepsFor(c.maxSteps, c.maxEpochs * loader.batchesPerEpoch);
      const evalPrompts = c.evalDataset ? (await prepareGrpoPrompts(c.evalDataset, models.tokenizer, promptOpts)).prompts : [];
      if (c.evalDataset) log(`eval: ${evalPrompts.length} held-out prompts from ${c.evalDataset}, greedy, every ${c.evalSteps || totalSteps} step(s) and at the end`);
      log(`grpo: ${data.prompts.length} prompts (column "${data.column}", template ${templateName}), ${c.batchSize} × ${c.numGenerations} completions per step` +
        `${strategy.worldSize > 1 ? ` per rank (${strategy.worldSize} ranks)` : ''}, ${totalSteps} steps; rewards ${rewards.names.map((n, i) => `${n}×${rewards!.weights[i]}`).join(' + ')}; ` +
        `advantage ${c.advantage}, loss ${c.lossType}, β ${c.beta}${models.reference ? (models.reference === models.policy ? ' (reference: the base with the adapter off)' : '') : ' (no reference model)'}; ` +
        `policy ${models.policy.lora ? `LoRA r=${c.loraRank}` : 'full weights'}`);
      const trainer = new GrpoTrainer(c, models, rewards, strategy, loader, templateName, totalSteps, log, opts, strategy.shard(evalPrompts));
      if (state) trainer.restore(state, c.resume!);
      return trainer;
    } catch (e) {
      rewards?.dispose();
      models.dispose();
      throw e;
    }
  }

  private restore(s: GrpoTrainerState, dir: string): void {
    this.step = s.global_step;
    if (this.step > this.totalSteps) throw new Error(`${dir} is at step ${this.step}, past this run's ${this.totalSteps} steps`);
    this.loader.restore({ epoch: s.epoch, index: s.step_in_epoch });
    this.logHistory.push(...s.log_history);
    this.controls.restoreBest(s);
    const saved = readOptimizerState(dir, OPTIMIZER_NAME);
    if (saved) this.opt.loadStateDict(saved.state, saved.globalStep);
    else this.log(`note: ${dir} has no optimizer state (saved without --need_optim_ckpt): the optimizer starts fresh`);
    this.log(`resumed from ${dir} after step ${this.step}`);
  }

  get stepsDone(): number {
    return this.step;
  }

  get modelSet(): GrpoModels {
    return this.models;
  }

  get logDir(): string {
    return this.config.logDir ?? join(this.config.savePath, 'logs');
  }

  async train(): Promise<GrpoResult> {
    const c = this.config;
    const main = this.strategy.isMain();
    const logger = main ? new MetricsLogger(this.logDir) : null;
    const progress = main ? new TrainingProgress({ total: this.totalSteps, startStep: this.step, label: 'grpo', bar: this.opts.progressBar }) : null;
    const interrupt = this.opts.interrupt ?? onInterrupt();
    const guard = new NonFiniteGuard(c, { savePath: c.savePath, log: this.log });
    if (c.resume) guard.checkpointSaved(this.step, c.resume);
    const history: Record<string, number>[] = [];
    let interrupted = false;
    let savedTo = c.savePath;
    let resumableAt = -1; // the step of a checkpoint with optimizer state written by this run
    try {
      while (this.step < this.totalSteps) {
        if (await stepBoundary(interrupt, this.strategy)) {
          interrupted = true;
          break;
        }
        const t0 = seconds();
        // 1-4. rollout, rewards, log-probs, advantages
        const before = this.loader.position;
        const prompts = this.loader.next().batch;
        let scored: ScoredBatch;
        try {
          scored = await this.rolloutAndScore(prompts, this.stepRng(0));
        } catch (e) {
          // A reward function failed (user code): keep the steps done so far, resumable once it is fixed. Under
          // several ranks the others wait in a collective, so only a one-process run can save here.
          if (this.step > 0 && this.strategy.worldSize === 1) {
            this.loader.restore(before);
            const dir = this.controls.checkpointDir(this.step);
            await this.saveCheckpoint(dir, true);
            (e as Error).message += `\n(the ${this.step} steps done are saved in ${dir}: fix the cause and add --resume ${dir})`;
          }
          throw e;
        }
        const t1 = seconds();
        // 5. update
        const update = this.update(scored);
        const t2 = seconds();
        // 6. the numbers checked (a stop throws before anything of this step is saved), then logged
        const metrics = this.strategy.reduceMetrics(this.stepMetrics(scored, update, { generate: scored.rollouts.seconds, score: scored.scoreSeconds, update: t2 - t1, step: t2 - t0 }));
        const step = this.step + 1;
        // rewards/<fn>/* are NaN where a function gave every sample null: not a fault of the run
        const checked = Object.fromEntries(Object.entries(metrics).filter(([k]) => !k.startsWith('time/') && !k.startsWith('rewards/')));
        guard.check(step, checked, this.opt.variables, 'policy_loss');
        this.step = step;
        history.push(metrics);
        if (this.controls.logDue(step)) {
          this.logHistory.push({ step, ...metrics });
          logger?.log(step, metrics);
          this.log(`step ${step}/${this.totalSteps}: reward ${metrics.reward!.toFixed(4)} ± ${metrics.reward_std!.toFixed(3)}, ` +
            `${this.rewards.names.map((n) => `${n} ${metrics[`rewards/${n}/mean`]!.toFixed(3)}`).join(', ')}, ` +
            `length ${metrics['completions/mean_length']!.toFixed(1)}, ${(t2 - t0).toFixed(1)} s`);
        }
        if (logger && c.sampleEvery > 0 && step % c.sampleEvery === 0) this.logSamples(logger, scored);
        progress?.update(step, { loss: metrics.policy_loss, lr: metrics['train/lr'], tokens: sum(scored.rollouts.lengths) });
        this.opts.onStep?.(step, metrics);
        // 7. held-out evaluation (--eval_dataset), or the step's own metrics, for --save_best
        const writeBest = (dir: string) => this.saveCheckpoint(dir, c.needOptimCkpt);
        if (c.evalDataset) {
          if (this.controls.evalDue(step, false)) {
            const ev = await this.evaluate();
            logger?.log(step, ev);
            this.logHistory.push({ step, ...ev });
            this.log(`step ${step}: eval reward ${ev['eval/reward']!.toFixed(4)}, accuracy ${ev['eval/accuracy']!.toFixed(4)}`);
            await this.controls.recordEval(step, ev, writeBest);
          }
        } else {
          await this.controls.recordEval(step, metrics, writeBest);
        }
        // 8. checkpoints
        if (this.controls.saveDue(step)) {
          const dir = this.controls.checkpointDir(step);
          await this.saveCheckpoint(dir, c.needOptimCkpt);
          guard.checkpointSaved(step, dir);
          if (c.needOptimCkpt) resumableAt = step;
          if (main) for (const old of this.controls.afterCheckpoint()) this.log(`removed ${old} (--save_total_limit ${c.saveTotalLimit})`);
        }
      }
      if (interrupted) {
        savedTo = this.controls.checkpointDir(this.step);
        if (resumableAt !== this.step) await this.saveCheckpoint(savedTo, true);
        this.log(`interrupted: saved ${savedTo}; continue with the same command plus --resume ${savedTo}`);
      } else {
        await this.saveFinal();
        this.log(`grpo: done after ${this.step} steps; policy in ${c.savePath}`);
        const best = this.controls.bestSummary();
        if (best) this.log(best);
      }
    } finally {
      progress?.stop();
      logger?.close();
      if (!this.opts.interrupt) interrupt.dispose();
    }
    return { history, steps: this.step, interrupted, savedTo };
  }

  /**
   * Greedy completions of this rank's held-out prompts scored by the run's rewards; means over all ranks' prompts.
   * eval/accuracy is the share whose weighted reward reaches 1 (an `accuracy` hit), as `evaluate` counts it.
   */
  async evaluate(): Promise<Record<string, number>> {
    const c = this.config;
    const res = await evaluatePrompts(this.models.policy, this.models.tokenizer, this.rewards, this.evalPrompts, {
      numSamples: 1, batchSize: c.microBatchSize, maxNewTokens: c.maxNewTokens, temperature: 1, topK: 0, topP: 1, threshold: 1, seed: c.seed,
    });
    const n = this.evalPrompts.length;
    // weighted by each rank's prompt count (shards may differ by one)
    const local: Record<string, number> = { n, reward: res.meanReward * n, accuracy: res.passAtK * n };
    for (const name of this.rewards.names) local[`rewards/${name}/mean`] = (Number.isFinite(res.perSource[name]!) ? res.perSource[name]! : 0) * n;
    const all = this.strategy.worldSize > 1 ? this.strategy.reduceMetrics(local, 'sum') : local;
    const total = Math.max(1, all.n!);
    return Object.fromEntries(Object.entries(all).filter(([k]) => k !== 'n').map(([k, v]) => [`eval/${k}`, v / total]));
  }

  /** The random stream for one use in the current step on this rank: a pure function of (seed, rank, step, use). */
  private stepRng(use: number): Rng {
    let h = Math.imul(this.config.seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
    for (const v of [this.strategy.rank, this.step, use]) h = Math.imul(h ^ (v + 0x165667b1), 0xc2b2ae35) >>> 0;
    return new Rng(h ^ (h >>> 16));
  }

  /** Steps 1-4 for one batch of prompts. */
  async rolloutAndScore(prompts: GrpoPrompt[], rng: Rng): Promise<ScoredBatch> {
    const c = this.config;
    const m = this.models;
    const G = c.numGenerations;
    // 1. rollout
    const { ids, mask } = repeatAndPad(prompts, G, this.padTokenId);
    const rollouts = sampleRollouts(m.policy, ids, mask, {
      maxNewTokens: c.maxNewTokens, temperature: c.temperature, topK: c.topK, topP: c.topP, eosTokenId: this.eosTokenId, padTokenId: this.padTokenId, rng,
    });
    const t0 = seconds();
    const completionIds = rollouts.answers.map((a, b) => a.slice(0, rollouts.lengths[b]));
    const completions = completionIds.map((a) => m.tokenizer.decode(a, { skipSpecialTokens: true }));
    // 2. rewards
    const rowPrompt = (b: number) => prompts[Math.floor(b / G)]!;
    const columns = [...new Set(prompts.flatMap((p) => Object.keys(p.extra)))];
    const extra: Record<string, unknown[]> = Object.fromEntries(columns.map((k) => [k, completions.map((_, b) => rowPrompt(b).extra[k])]));
    extra.completion_ids = completionIds;
    const batch: RewardBatch = { prompts: completions.map((_, b) => rowPrompt(b).text), completions, extra, promptIds: completions.map((_, b) => rowPrompt(b).ids), completionIds };
    const { total, perSource } = await this.rewards.score(batch);
    // 3. log-probs without gradient: the rollout policy's (needed once the policy moves within the batch) and the reference's
    const needOld = c.numIterations > 1 || (c.advantage === 'reinforce_pp' && m.reference !== null);
    const { old, ref } = this.scoreLogProbs(rollouts, needOld, m.reference !== null);
    // 4. advantages
    // REINFORCE++ whitens over the global batch: its statistics are summed over the ranks
    const sumOverRanks: SumOverRanks | undefined = this.strategy.worldSize > 1 ? (local) => this.strategy.reduceMetrics(local, 'sum') : undefined;
    const advantages = computeAdvantages(c.advantage, {
      rewards: total, G, oldLogps: old ?? undefined, refLogps: ref, mask: rollouts.actionMask, klCoef: c.beta, scaling: c.scaleRewards, sumOverRanks,
    });
    const stats = groupRewardStats(total, G);
    const keep = total.map((_, b) => b).filter((b) => !(c.filterZeroStd && stats.zeroStd[Math.floor(b / G)]));
    return {
      rollouts, prompts, completions, rewards: total, perSource, oldLogps: old, refLogps: ref, advantages, keep,
      zeroStdGroups: stats.zeroStd.filter(Boolean).length, scoreSeconds: seconds() - t0,
    };
  }

  private scoreLogProbs(r: Rollouts, needOld: boolean, needRef: boolean): { old: number[][] | null; ref: number[][] | null } {
    if (!needOld && !needRef) return { old: null, ref: null };
    const B = r.sequences.length;
    const old: number[][] = new Array(B);
    const ref: number[][] = new Array(B);
    const pad = (row: number[]) => [...row, ...new Array<number>(r.N - row.length).fill(0)];
    for (const { rows, n } of rowChunks(r.sequences.map((_, b) => b), r, this.config.microBatchSize)) {
      const t = chunkTensors(r, rows, n);
      try {
        if (needOld) {
          const lp = answerLogProbs(this.models.policy, t.ids, t.mask, t.answer, r.P);
          (lp.arraySync() as number[][]).forEach((row, i) => (old[rows[i]!] = pad(row)));
          lp.dispose();
        }
        if (needRef) {
          const lp = tf.tidy(() => referenceLogProbs(this.models.policy, this.models.reference!, t.ids, t.mask, t.answer, r.P));
          (lp.arraySync() as number[][]).forEach((row, i) => (ref[rows[i]!] = pad(row)));
          lp.dispose();
        }
      } finally {
        for (const x of Object.values(t)) x.dispose();
      }
    }
    return { old: needOld ? old : null, ref: needRef ? ref : null };
  }

  /** Step 5: see grpoUpdate. */
  update(s: ScoredBatch): Record<string, number> {
    return grpoUpdate(this.models.policy, this.opt, this.strategy, s, this.config);
  }

  private stepMetrics(s: ScoredBatch, update: Record<string, number>, time: { generate: number; score: number; update: number; step: number }): Record<string, number> {
    const c = this.config;
    const r = s.rollouts;
    const G = c.numGenerations;
    const stats = groupRewardStats(s.rewards, G);
    const lengths = r.lengths;
    const eos = endedWithEos(r, this.eosTokenId);
    const perFn: Record<string, number> = {};
    this.rewards.names.forEach((name, f) => {
      const st = nanStats(s.perSource[f]!);
      perFn[`rewards/${name}/mean`] = st.mean;
      perFn[`rewards/${name}/std`] = st.std;
    });
    const newTokens = sum(lengths);
    const updateTokens = sum(s.keep.map((b) => r.P + lengths[b]!)) * c.numIterations;
    return {
      reward: sum(s.rewards) / s.rewards.length,
      reward_std: stats.rewardStd,
      ...perFn,
      frac_reward_zero_std: stats.fracZeroStd,
      'completions/mean_length': newTokens / lengths.length,
      'completions/min_length': Math.min(...lengths),
      'completions/max_length': Math.max(...lengths),
      'completions/clipped_ratio': eos.filter((e) => !e).length / eos.length,
      ...update,
      'train/kept_groups': s.keep.length / G,
      'time/generate_s': time.generate,
      'time/score_s': time.score,
      'time/update_s': time.update,
      'time/step_s': time.step,
      'time/new_tokens_per_s': time.generate > 0 ? newTokens / time.generate : 0,
      'time/update_tokens_per_s': time.update > 0 ? updateTokens / time.update : 0,
    };
  }

  /** The first completion of each of the first groups, with its rewards per function (TensorBoard text, samples.jsonl). */
  private logSamples(logger: MetricsLogger, s: ScoredBatch): void {
    const G = this.config.numGenerations;
    for (let g = 0; g < Math.min(2, s.prompts.length); g++) {
      const b = g * G;
      const parts = this.rewards.names.map((n, f) => `${n} ${s.perSource[f]![b] === null ? '–' : s.perSource[f]![b]!.toFixed(3)}`).join(', ');
      logger.logText('grpo/sample', `${s.prompts[g]!.text}${s.completions[b]}\n[reward ${s.rewards[b]!.toFixed(4)}: ${parts}; ${s.rollouts.lengths[b]} tokens]`, this.step);
    }
  }

  private trainerState(): GrpoTrainerState {
    const pos = this.loader.position;
    return {
      global_step: this.step, epoch: pos.epoch, step_in_epoch: pos.index, ...this.controls.bestState(),
      rng_state: { seed: this.config.seed },
      args: JSON.parse(JSON.stringify({ ...this.config, promptTemplate: this.templateName })) as Record<string, unknown>,
      log_history: this.logHistory,
      world_size: this.strategy.worldSize,
      grpo: { prompt_template: this.templateName },
    };
  }

  private configExtra(): Record<string, unknown> {
    return { rlhf: { kind: 'grpo_policy', prompt_template: this.templateName } };
  }

  /** A resumable checkpoint (LoRA: the adapter, unmerged). Called on every rank; rank 0 writes. */
  async saveCheckpoint(dir: string, withOptimizer: boolean): Promise<void> {
    const m = this.models;
    await this.strategy.saveOnMain(withOptimizer ? [this.opt] : [], () => saveCheckpoint(dir, {
      model: m.policy, tokenizer: m.tokenizer, configExtra: this.configExtra(), mergeLora: false, baseModelPath: m.pretrainDir,
      optimizers: withOptimizer ? { [OPTIMIZER_NAME]: this.opt } : undefined, trainerState: this.trainerState(),
    }));
  }

  /** The run's output in --save_path (merged with --merge_lora_weights or when the base is itself an adapter). */
  private async saveFinal(): Promise<void> {
    const c = this.config;
    const m = this.models;
    await this.strategy.saveOnMain(c.needOptimCkpt ? [this.opt] : [], () => saveFinalCheckpoint(c.savePath, {
      model: m.policy, tokenizer: m.tokenizer, configExtra: this.configExtra(), mergeLora: c.mergeLoraWeights || m.pretrainIsAdapter, baseModelPath: m.pretrainDir,
      optimizers: c.needOptimCkpt ? { [OPTIMIZER_NAME]: this.opt } : undefined, trainerState: this.trainerState(),
    }));
  }

  dispose(): void {
    this.opt.dispose();
    this.rewards.dispose();
    this.models.dispose();
  }
}

/** Runs a whole GRPO stage from a config (the CLI calls this). */
export async function runGrpo(config: GrpoConfigInput | GrpoConfig, opts: GrpoRunOptions = {}): Promise<GrpoResult> {
  const trainer = await GrpoTrainer.create(config, opts);
  try {
    return await trainer.train();
  } finally {
    trainer.dispose();
  }
}
