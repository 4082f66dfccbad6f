/**
 * Stage 2: train a reward model on preference pairs.
 *
 *   runRewardTraining(config)      validate → load model, tokenizer, data → RewardTrainer.train() → saved model
 *   RewardTrainer.computeLoss()    one micro-batch: rewards of chosen and rejected, pairwise loss, batch metrics
 *   RewardTrainer.train()          the loop: accumulate, step, log, checkpoint, Ctrl-C, evaluate every epoch, save
 *
 * Metric keys (src/trainer/metrics.ts): train/loss, reward/accuracy, reward/chosen, reward/rejected, reward/margin,
 * train/lr, train/grad_norm, train/epoch, time/pairs_per_s, time/tokens_per_s; the evaluation at each epoch's end
 * logs eval/loss, eval/reward/accuracy, eval/reward/chosen, eval/reward/rejected, eval/reward/margin.
 */
import { join, resolve } from 'node:path';
import { tf } from '../engine/tf.js';
import { initBackend } from '../engine/backend.js';
import type { BatchLoader } from '../data/batching.js';
import { resolvePromptTemplate } from '../data/templates/index.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { Tokenizer } from '../hub/tokenizer.js';
import type { DecoderModel } from '../models/decoder.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import { loadPretrained, type LoadedModel } from '../models/pretrained.js';
import { ValueHead } from '../models/value_head.js';
import { createStrategy, type Strategy } from '../strategies/strategy.js';
import { Optimization } from '../trainer/optimization.js';
import {
  checkResumeNotFinished, noteResumeChanges, readResumableState, saveCheckpoint, saveFinalCheckpoint, type ResumeNotedField,
} from '../trainer/stage_checkpoint.js';
import type { TrainerState } from '../trainer/checkpoint_io.js';
import { checkResumeFixed, loopTrainerState, nullStream, restoreLoopState } from '../trainer/loop_state.js';
import { recoverRunDirs } from '../trainer/final_save.js';
import { NonFiniteGuard } from '../trainer/nonfinite_guard.js';
import { MetricsLogger, RunningMean } from '../trainer/metrics.js';
import { TrainingProgress } from '../trainer/progress.js';
import { onInterrupt, stepBoundary, type InterruptFlag } from '../trainer/interrupt.js';
import { LoopControls, epochsFor, totalStepsFor } from '../trainer/loop_controls.js';
import { scheduleFor } from '../trainer/schedule_config.js';
import { deriveBatch } from '../trainer/batch_size.js';
import { resolveRewardConfig, type RewardConfig, type RewardConfigInput } from './config.js';
import { pairMetrics, pairwiseLoss, type PairwiseLoss } from './losses.js';
import { RewardModel, rewardConfigExtra } from './model.js';
import { collatePairs, loadRewardData, pairPromptKey, tokenizePreferencePairs, tokenizerAddsBos, type PairBatch, type TokenizedPair } from './dataset.js';
import { adapterBase } from '../models/adapter_dir.js';
import { packFrozenModel } from '../models/frozen_dtype.js';

export { adapterBase };

/** Name of the optimizer inside optimizer.safetensors. */
export const OPTIMIZER_NAME = 'reward_model';

/** Config fields that fix the data order and the model's shape: --resume must use the same values. */
const RESUME_FIXED: [keyof RewardConfig, string][] = [
  ['dataset', 'dataset'], ['evalDataset', 'eval_dataset'], ['evalRatio', 'eval_ratio'], ['maxDatasetsSize', 'max_datasets_size'],
  ['test', 'test'], ['maxLen', 'max_len'], ['promptTemplate', 'prompt_template'], ['batchSize', 'batch_size'],
  ['accumulationSteps', 'accumulation_steps'], ['seed', 'seed'], ['loraRank', 'lora_rank'], ['rewardReduction', 'reward_reduction'],
];

/** Settings that may change on --resume: noted, and the run goes on with the new values. */
const RESUME_NOTED: readonly ResumeNotedField[] = [
  { field: 'lr' }, { field: 'weightDecay' }, { field: 'warmupRatio' }, { field: 'gradClip' }, { field: 'maxEpochs' }, { field: 'lossFn' },
  { field: 'loraAlpha' }, { field: 'loraDropout' },
  { field: 'pretrain', path: true, effect: 'the weights come from the checkpoint, not from --pretrain' },
];

export interface EvalMetrics {
  loss: number;
  /** Share of pairs with r_chosen > r_rejected. */
  accuracy: number;
  chosen: number;
  rejected: number;
  margin: number;
}

export interface EpochSummary {
  /** 0-based. */
  epoch: number;
  /** Means over the epoch's micro-batches, keys as logged (train/loss, reward/accuracy, ...). */
  train: Record<string, number>;
  eval: EvalMetrics | null;
}

export interface RewardRunResult {
  /** Where the model is: --save_path, or the resumable checkpoint when interrupted. */
  outputDir: string;
  interrupted: boolean;
  /** Optimizer steps taken in total (resumed ones included). */
  steps: number;
  /** Epochs finished in this run. */
  epochs: EpochSummary[];
}

export interface RewardRunOptions {
  /** Where notes go (default: stdout). */
  log?: (line: string) => void;
  /** Polled between steps: when set, a resumable checkpoint is saved and the run returns. Default: Ctrl-C/SIGTERM. */
  interrupt?: InterruptFlag;
  /** Progress bar / lines on stdout (default true). */
  progress?: boolean;
}

/** What a trainer is built from (runRewardTraining assembles it). */
export interface RewardTrainerParts {
  model: RewardModel;
  tokenizer: Tokenizer;
  strategy: Strategy;
  train: TokenizedPair[];
  eval: TokenizedPair[];
  /** Directory a saved LoRA adapter names as its base; null: save the adapter merged into full weights. */
  loraBase: string | null;
  /** The prompt template the pairs were rendered with, recorded in the output (`score` renders text the same way). */
  templateName?: string;
}

/** Rewards of pairs scored in batches, no gradients: chosen[i] and rejected[i] of pair i. */
export function scorePairs(model: RewardModel, pairs: readonly TokenizedPair[], padTokenId: number, batchSize = 8): { chosen: number[]; rejected: number[] } {
  const chosen: number[] = [];
  const rejected: number[] = [];
  for (let i = 0; i < pairs.length; i += batchSize) {
    const b = collatePairs(pairs.slice(i, i + batchSize), padTokenId);
    const r = model.scoreArrays(b.inputIds, b.attentionMask, b.answerMask);
    chosen.push(...b.chosenRows.map((k) => r[k]!));
    rejected.push(...b.rejectedRows.map((k) => r[k]!));
  }
  return { chosen, rejected };
}

/** Loss, accuracy, mean rewards and margin over a set of pairs (the per-epoch evaluation; works on any pairs). */
export function evaluatePairs(
  model: RewardModel,
  pairs: readonly TokenizedPair[],
  opts: { padTokenId: number; batchSize?: number; loss?: PairwiseLoss },
): EvalMetrics {
  if (pairs.length === 0) throw new Error('evaluatePairs: no pairs');
  const { chosen, rejected } = scorePairs(model, pairs, opts.padTokenId, opts.batchSize);
  const lossFn = opts.loss ?? pairwiseLoss('log_sig');
  const loss = tf.tidy(() => lossFn(tf.tensor1d(chosen), tf.tensor1d(rejected)).dataSync()[0]!);
  const n = pairs.length;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  return {
    loss,
    accuracy: chosen.filter((c, i) => c > rejected[i]!).length / n,
    chosen: sum(chosen) / n,
    rejected: sum(rejected) / n,
    margin: (sum(chosen) - sum(rejected)) / n,
  };
}

/**
 * The training objective on one pair batch (chosen rows first, then rejected): both sides scored in one forward,
 * then the pairwise loss; accuracy and mean rewards go to `aux`. The trainer and the benchmark both call this.
 */
export function pairBatchLoss(model: RewardModel, loss: PairwiseLoss, batch: PairBatch, aux: Record<string, tf.Tensor>, training: boolean): tf.Scalar {
  const B = batch.pairs;
  const ids = tf.tensor2d(batch.inputIds, undefined, 'int32'); // (R, T): each distinct sequence once
  const mask = tf.tensor2d(batch.attentionMask, undefined, 'int32');
  const answer = batch.answerMask && tf.tensor2d(batch.answerMask, undefined, 'int32');
  const rewards = model.score(ids, mask, training, answer); // (R)
  const plain = batch.inputIds.length === 2 * B && batch.chosenRows.every((r, i) => r === i);
  const chosen = plain ? tf.slice(rewards, [0], [B]) : tf.gather(rewards, tf.tensor1d(batch.chosenRows, 'int32'));
  const rejected = plain ? tf.slice(rewards, [B], [B]) : tf.gather(rewards, tf.tensor1d(batch.rejectedRows, 'int32'));
  Object.assign(aux, pairMetrics(chosen, rejected));
  return loss(chosen, rejected);
}

export class RewardTrainer {
  readonly config: RewardConfig;
  readonly model: RewardModel;
  readonly tokenizer: Tokenizer;
  readonly optimization: Optimization;
  readonly loader: BatchLoader<TokenizedPair, PairBatch>;
  readonly padTokenId: number;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  /** Epochs the loop needs for totalSteps (more than --max_epochs when --max_steps asks for more). */
  readonly epochsToRun: number;
  /** --max_steps, --eval_steps, --logging_steps, --save_total_limit, --save_best (src/trainer/loop_controls.ts). */
  readonly controls: LoopControls;
  private readonly parts: RewardTrainerParts;
  private readonly strategy: Strategy;
  private readonly loss: PairwiseLoss;
  private readonly log: (line: string) => void;
  private readonly runOptions: RewardRunOptions;
  private logHistory: Record<string, number | null>[] = [];

  constructor(config: RewardConfig, parts: RewardTrainerParts, runOptions: RewardRunOptions = {}) {
    this.config = config;
    this.parts = parts;
    this.model = parts.model;
    this.tokenizer = parts.tokenizer;
    this.strategy = parts.strategy;
    this.runOptions = runOptions;
    // Under ddp/zero2 every rank runs this; only rank 0 prints.
    this.log = parts.strategy.isMain() ? (runOptions.log ?? ((l: string) => console.log(l))) : () => {};
    if (parts.train.length === 0) throw new Error('RewardTrainer: no training pairs');
    const pad = parts.tokenizer.padTokenId ?? parts.model.backbone.config.padTokenId ?? parts.tokenizer.eosTokenId;
    if (pad === null) throw new Error('the tokenizer has neither a pad nor an EOS token to pad batches with: set pad_token in tokenizer_config.json');
    this.padTokenId = pad;
    this.loss = pairwiseLoss(config.lossFn);
    this.loader = parts.strategy.createLoader(parts.train, {
      batchSize: config.batchSize, seed: config.seed, shuffle: true, collate: (items) => collatePairs(items, pad),
      ...(config.groupByPrompt ? { groupOf: pairPromptKey } : {}),
    });
    // An epoch ends with an optimizer step even when its last accumulation window is short.
    this.stepsPerEpoch = Math.ceil(this.loader.batchesPerEpoch / config.accumulationSteps);
    this.totalSteps = totalStepsFor(config.maxSteps, this.stepsPerEpoch * config.maxEpochs);
    this.epochsToRun = epochsFor(this.totalSteps, this.stepsPerEpoch);
    this.optimization = new Optimization(parts.model.trainableParameters(), {
      lr: config.lr, weightDecay: config.weightDecay, gradClip: config.gradClip, accumulationSteps: config.accumulationSteps,
      ...scheduleFor(config, this.totalSteps),
    }, parts.strategy);
    this.controls = new LoopControls(config, {
      savePath: config.savePath, totalSteps: this.totalSteps, resumeDir: config.resume, stage: 'train_reward_model', log: this.log,
      evalMetrics: parts.eval.length ? Object.keys(evalRecord({ loss: 0, accuracy: 0, chosen: 0, rejected: 0, margin: 0 })) : [],
      noEval: 'there are no held-out pairs: give --eval_dataset or --eval_ratio > 0',
    });
  }

  /** Rewards of a pair batch and the pairwise loss on them; batch statistics go to `aux`. */
  computeLoss(batch: PairBatch, aux: Record<string, tf.Tensor>, training: boolean): tf.Scalar {
    return pairBatchLoss(this.model, this.loss, batch, aux, training);
  }

  /** This rank's share of the held-out pairs, scored; metrics averaged over ranks. Null without held-out pairs. */
  evaluate(pairs: readonly TokenizedPair[] = this.parts.eval): EvalMetrics | null {
    if (pairs.length === 0) return null;
    const mine = this.strategy.shard(pairs);
    const m = evaluatePairs(this.model, mine, { padTokenId: this.padTokenId, batchSize: Math.max(this.config.batchSize, 8), loss: this.loss });
    return this.strategy.reduceMetrics({ ...m }) as unknown as EvalMetrics;
  }

  /** Continues from a checkpoint's trainer state and optimizer state. */
  restore(state: TrainerState, dir: string): void {
    this.logHistory = restoreLoopState(this, state, dir, OPTIMIZER_NAME);
    this.log(`resumed from ${dir}: step ${state.global_step}/${this.totalSteps}, epoch ${state.epoch + 1}, batch ${state.step_in_epoch}`);
  }

  /** Everything --resume needs besides weights and optimizer state. */
  trainerState(): TrainerState {
    return loopTrainerState(this, { seed: this.config.seed, args: this.config, logHistory: this.logHistory, worldSize: this.strategy.worldSize });
  }

  /**
   * Writes a checkpoint directory: HF model (or PEFT adapter) + value head + `rlhf` marker + tokenizer + trainer
   * state, and the optimizer state when asked. Main rank only: `save` wraps it for every rank.
   */
  writeCheckpoint(dir: string, opts: { withOptimizer: boolean; merge: boolean; final?: boolean }): Promise<void> {
    // The final model goes into save_path beside its checkpoint-* and logs/ (saveFinalCheckpoint); the others are whole dirs.
    return (opts.final ? saveFinalCheckpoint : saveCheckpoint)(dir, {
      model: this.model.backbone, tokenizer: this.tokenizer, valueHead: this.model.valueHead,
      configExtra: rewardConfigExtra(this.model.reduction, this.parts.templateName), mergeLora: opts.merge || this.parts.loraBase === null,
      baseModelPath: this.parts.loraBase ?? undefined,
      optimizers: opts.withOptimizer ? { [OPTIMIZER_NAME]: this.optimization } : undefined, trainerState: this.trainerState(),
    });
  }

  /** A checkpoint, called on every rank (zero2 gathers the optimizer state first); rank 0 writes. */
  async save(dir: string, opts: { withOptimizer: boolean; merge: boolean }): Promise<void> {
    await this.strategy.saveOnMain(opts.withOptimizer ? [this.optimization] : [], () => this.writeCheckpoint(dir, opts));
  }

  /** The training loop. */
  async train(): Promise<RewardRunResult> {
    const c = this.config;
    // A checkpoint that already finished the run is reported, not saved again as if it had trained.
    if (c.resume) {
      const done = this.loader.position.epoch >= c.maxEpochs ? Math.max(this.totalSteps, this.optimization.globalStep) : this.optimization.globalStep;
      checkResumeNotFinished(c.resume, { step: done, total: this.totalSteps });
    }
    const guard = new NonFiniteGuard(c, { savePath: c.savePath, log: this.log });
    const main = this.strategy.isMain();
    const logger = main ? new MetricsLogger(c.logDir ?? join(c.savePath, 'logs')) : null;
    const interrupt = this.runOptions.interrupt ?? onInterrupt();
    if (c.resume) guard.checkpointSaved(this.optimization.globalStep, c.resume);
    const stepLoss = { sum: 0, micro: 0 };
    const showProgress = main && this.runOptions.progress !== false;
    const epochs: EpochSummary[] = [];
    const window = { start: performance.now(), pairs: 0, tokens: 0 };
    let progress: TrainingProgress | null = null;
    let lastEval: EvalMetrics | null = null;
    // Held-out metrics, logged and offered to --save_best.
    const evaluateAt = async (step: number): Promise<EvalMetrics | null> => {
      const ev = this.evaluate();
      if (!ev) return null;
      const record = evalRecord(ev);
      logger?.log(step, record);
      this.logHistory.push({ step, ...record });
      await this.controls.recordEval(step, record, (dir) => this.save(dir, { withOptimizer: c.needOptimCkpt, merge: false }));
      return ev;
    };
    try {
      while (this.loader.position.epoch < this.epochsToRun && this.optimization.globalStep < this.totalSteps) {
        const epoch = this.loader.position.epoch;
        const running = new RunningMean(); // since the last log line
        const epochMeans = new RunningMean();
        progress = new TrainingProgress({
          total: this.totalSteps, startStep: this.optimization.globalStep, label: `rm epoch ${epoch + 1}/${this.epochsToRun}`,
          ...(showProgress ? {} : { bar: false, stream: nullStream() }),
        });
        while (this.loader.position.epoch === epoch) {
          // 1. a micro-batch: forward both sides, pairwise loss, gradients into the accumulator
          const microIndex = epoch * this.loader.batchesPerEpoch + this.loader.position.index;
          const { batch } = this.loader.next();
          const endOfEpoch = this.loader.position.epoch !== epoch;
          this.model.setDropoutSeed((c.seed * 1_000_003 + microIndex) >>> 0); // the same masks after a resume
          const { loss, aux } = this.optimization.backward((auxT) => this.computeLoss(batch, auxT, true));
          const metrics = {
            'train/loss': loss, 'reward/accuracy': aux.accuracy!, 'reward/chosen': aux.chosen!,
            'reward/rejected': aux.rejected!, 'reward/margin': aux.margin!,
          };
          running.add(metrics);
          epochMeans.add(metrics);
          stepLoss.sum += loss;
          stepLoss.micro += 1;
          window.pairs += batch.pairs;
          window.tokens += batch.tokens;
          if (!this.optimization.ready() && !endOfEpoch) continue;

          // 2. optimizer step, then logging, periodic checkpoint, Ctrl-C
          const s = this.optimization.step();
          const step = this.optimization.globalStep;
          const meanLoss = this.strategy.reduceMetrics({ loss: stepLoss.sum / stepLoss.micro }).loss!;
          Object.assign(stepLoss, { sum: 0, micro: 0 });
          // Stops (throws) before anything of this step is saved when a number has gone bad.
          guard.check(step, { 'train/loss': meanLoss, 'train/grad_norm': s.gradNorm }, this.optimization.variables, 'train/loss');
          if (this.controls.logDue(step) || endOfEpoch) {
            const seconds = Math.max((performance.now() - window.start) / 1000, 1e-9);
            const pos = this.loader.position;
            const record = {
              ...this.strategy.reduceMetrics({ ...running.log('train'), 'train/lr': s.lr, 'train/grad_norm': s.gradNorm }),
              'train/epoch': pos.epoch + pos.index / this.loader.batchesPerEpoch,
              // throughput of all ranks together
              ...this.strategy.reduceMetrics({ 'time/pairs_per_s': window.pairs / seconds, 'time/tokens_per_s': window.tokens / seconds }, 'sum'),
            };
            logger?.log(step, record);
            this.logHistory.push({ step, ...record });
            Object.assign(window, { start: performance.now(), pairs: 0, tokens: 0 });
          }
          progress.update(step, { loss, lr: s.lr, tokens: batch.tokens });
          // --eval_steps: every n steps and at the last (without it: at epoch ends, below)
          if (c.evalSteps > 0 && this.controls.evalDue(step, false)) lastEval = await evaluateAt(step);
          if (this.controls.saveDue(step)) {
            const dir = this.controls.checkpointDir(step);
            await this.save(dir, { withOptimizer: c.needOptimCkpt, merge: false });
            guard.checkpointSaved(step, dir);
            if (main) for (const old of this.controls.afterCheckpoint()) this.log(`removed ${old} (--save_total_limit ${c.saveTotalLimit})`);
          }
          if ((await stepBoundary(interrupt, this.strategy)) && step < this.totalSteps) {
            progress.stop();
            const dir = join(c.savePath, `checkpoint-${step}`);
            const justSaved = this.controls.saveDue(step) && c.needOptimCkpt;
            if (!justSaved) await this.save(dir, { withOptimizer: true, merge: false });
            this.log(`interrupted at step ${step}/${this.totalSteps}: saved ${dir}; continue with the same command plus --resume ${dir}`);
            return { outputDir: dir, interrupted: true, steps: step, epochs };
          }
          if (step >= this.totalSteps) break; // --max_steps reached inside the epoch
        }

        // 3. end of epoch: evaluation, its metrics, one summary line
        progress.stop();
        const trainMeans = this.strategy.reduceMetrics(epochMeans.log('train'));
        if (c.evalSteps === 0) lastEval = await evaluateAt(this.optimization.globalStep);
        const ev = lastEval;
        epochs.push({ epoch, train: trainMeans, eval: ev });
        this.log(formatEpochSummary(epoch, this.epochsToRun, trainMeans, ev));
      }

      // 4. the final model, in --save_path (keeping its checkpoint-* and logs subdirectories)
      logger?.close();
      await this.strategy.saveOnMain(c.needOptimCkpt ? [this.optimization] : [], () =>
        this.writeCheckpoint(c.savePath, { withOptimizer: c.needOptimCkpt, merge: c.mergeLoraWeights, final: true }),
      );
      this.log(`saved the reward model to ${c.savePath}`);
      const best = this.controls.bestSummary();
      if (best) this.log(best);
      return { outputDir: c.savePath, interrupted: false, steps: this.optimization.globalStep, epochs };
    } finally {
      progress?.stop();
      logger?.close();
      if (!this.runOptions.interrupt) interrupt.dispose();
    }
  }

  dispose(): void {
    this.optimization.dispose();
  }
}

/** The logged names of a held-out evaluation. */
export function evalRecord(ev: EvalMetrics): Record<string, number> {
  return {
    'eval/loss': ev.loss, 'eval/reward/accuracy': ev.accuracy, 'eval/reward/chosen': ev.chosen,
    'eval/reward/rejected': ev.rejected, 'eval/reward/margin': ev.margin,
  };
}

export function formatEpochSummary(epoch: number, maxEpochs: number, train: Record<string, number>, ev: EvalMetrics | null): string {
  const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(4));
  let line = `epoch ${epoch + 1}/${maxEpochs} | train loss ${f(train['train/loss'])} acc ${f(train['reward/accuracy'])} margin ${f(train['reward/margin'])}`;
  if (ev) line += ` | eval loss ${f(ev.loss)} acc ${f(ev.accuracy)} chosen ${f(ev.chosen)} rejected ${f(ev.rejected)} margin ${f(ev.margin)}`;
  return line;
}

async function readResumeState(c: RewardConfig, worldSize: number, log: (l: string) => void): Promise<TrainerState> {
  const dir = c.resume!;
  const state = await readResumableState(dir, 'train_reward_model');
  checkResumeFixed(dir, state, c, RESUME_FIXED, worldSize);
  if (c.loraRank > 0 && adapterBase(dir) === null) {
    throw new Error(
      `--resume ${dir}: it holds merged full weights, not the LoRA adapter being trained, so the run cannot continue exactly; ` +
        `start a new run from these weights with --pretrain ${dir}`,
    );
  }
  noteResumeChanges(dir, state, c as unknown as Record<string, unknown>, RESUME_NOTED, log);
  return state;
}

/** A directory or Hub id, and its tokenizer; --model checked against config.json. */
async function loadBackbone(idOrDir: string, modelType: string | undefined, tokenizerDir: string | undefined): Promise<LoadedModel & { tokenizer: Tokenizer }> {
  const dir = await resolvePretrained(idOrDir);
  const loaded = loadPretrained(dir);
  try {
    if (modelType && modelType !== loaded.model.config.modelType) {
      throw new Error(`--model ${modelType} but ${dir}/config.json says model_type "${loaded.model.config.modelType}"`);
    }
    return { ...loaded, tokenizer: await Tokenizer.fromDir(tokenizerDir ?? dir) };
  } catch (e) {
    loaded.model.dispose();
    loaded.valueHead?.dispose();
    throw e;
  }
}

/**
 * What this run trains: an adapter that came with --pretrain (an SFT LoRA output) is folded into the base weights;
 * a new adapter is attached with --lora_rank > 0 (when resuming, the checkpoint's adapter is the one trained); the
 * value head comes from the checkpoint or is created fresh (seeded).
 */
function prepareModel(
  c: RewardConfig, model: DecoderModel, head: ValueHead | null, padTokenId: number | null, resuming: boolean, log: (l: string) => void,
): RewardModel {
  if (model.lora && !resuming) {
    model.lora.mergeInto(model.params, model.spec);
    model.lora.dispose();
    model.lora = null;
    log('--pretrain holds a LoRA adapter: merged it into its base weights');
  }
  if (c.loraRank > 0 && !model.lora) {
    const targets = c.loraTargets ?? DEFAULT_LORA_TARGETS[model.config.modelType] ?? 'all-linear';
    model.lora = LoraAdapter.create(model.spec, { r: c.loraRank, alpha: c.loraAlpha, dropout: c.loraDropout, targetModules: targets }, c.seed);
  }
  if (c.frozenDtype && c.frozenDtype !== 'float32' && model.lora) packFrozenModel(model, c.frozenDtype);
  let valueHead = head;
  if (!valueHead) {
    valueHead = ValueHead.create(model.config.wordEmbedDim, c.seed);
    log('no value head in the checkpoint: created a new one');
  }
  // The reward is read at the last token that is not this id, and the saved config says so (transformers' rule).
  return new RewardModel(model, valueHead, c.rewardReduction, model.config.padTokenId ?? padTokenId);
}

/** The template of a reward model trained from a model that has neither a recorded template nor a chat template. */
export const REWARD_FALLBACK_TEMPLATE = 'human_assistant';

/** The whole stage, as `train_reward_model` runs it. */
export async function runRewardTraining(input: RewardConfigInput, runOptions: RewardRunOptions = {}): Promise<RewardRunResult> {
  const log = runOptions.log ?? ((l: string) => console.log(l));
  // 1. validate everything before any heavy work
  const c = resolveRewardConfig(input);
  const strategy = createStrategy(c.strategy);
  const say = strategy.isMain() ? log : () => {};
  const batch = deriveBatch(c, strategy.worldSize);
  Object.assign(c, { batchSize: batch.batchSize, accumulationSteps: batch.accumulationSteps });
  if (batch.note) say(batch.note);
  await initBackend(c.backend, say);
  await recoverRunDirs(strategy, [c.savePath, c.resume], say);
  const resumeState = c.resume ? await readResumeState(c, strategy.worldSize, say) : null;

  // 2. model and tokenizer (the checkpoint's when resuming)
  const loaded = await loadBackbone(c.resume ?? c.pretrain, c.modelType, c.resume ? undefined : c.tokenizer);
  // A saved adapter must name base weights that stay on disk; after merging an SFT adapter there are none: save merged.
  const loraBase = c.resume ? adapterBase(c.resume) : loaded.model.lora ? null : resolve(loaded.dir);
  if (loraBase === null && c.frozenDtype && c.frozenDtype !== 'float32') {
    loaded.model.dispose();
    loaded.valueHead?.dispose();
    throw new Error(`--frozen_dtype ${c.frozenDtype}: the LoRA adapter would be saved merged into its packed base (--pretrain is itself an adapter); give its merged (full) model as --pretrain`);
  }
  const model = prepareModel(c, loaded.model, loaded.valueHead, loaded.tokenizer.padTokenId, resumeState !== null, say);
  if (c.loraRank > 0 && loraBase === null && !c.mergeLoraWeights) say('the LoRA adapter will be saved merged into full weights (its base is not a plain model directory)');
  try {
    const maxPos = model.backbone.config.maxPositions;
    if (c.maxLen > maxPos) throw new Error(`--max_len ${c.maxLen} exceeds the model's ${maxPos} positions: use --max_len ${maxPos} or less`);

    // 3. data
    const data = await loadRewardData(c);
    for (const note of data.notes) say(`data: ${note}`);
    const { template, note } = resolvePromptTemplate(c.promptTemplate, loaded.tokenizer, REWARD_FALLBACK_TEMPLATE, c.resume ?? c.pretrain);
    say(note);
    const tokOpts = { maxLen: c.maxLen, addBos: !template.ownsSpecialTokens && tokenizerAddsBos(loaded.tokenizer) };
    const train = tokenizePreferencePairs(data.train, template, loaded.tokenizer, tokOpts);
    const evalSet = tokenizePreferencePairs(data.eval, template, loaded.tokenizer, tokOpts);
    const s = train.stats;
    say(
      `data: ${s.pairs} train / ${evalSet.stats.pairs} eval pairs tokenized; of the train sequences ${s.promptTruncated} had ` +
        `their prompt cut on the left and ${s.answerTruncated} their answer cut on the right (--max_len ${c.maxLen}); ` +
        `${s.droppedIdentical + evalSet.stats.droppedIdentical} pairs with identical sides dropped`,
    );
    if (train.pairs.length === 0) throw new Error(`${c.dataset}: no usable training pairs after tokenization`);

    // 4. train
    const trainer = new RewardTrainer(c, { model, tokenizer: loaded.tokenizer, strategy, train: train.pairs, eval: evalSet.pairs, loraBase, templateName: template.name }, { ...runOptions, log });
    try {
      if (resumeState) trainer.restore(resumeState, c.resume!);
      return await trainer.train();
    } finally {
      trainer.dispose();
    }
  } finally {
    model.dispose();
  }
}
