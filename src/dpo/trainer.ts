/**
 * Direct preference optimization (DPO, IPO, hinge, robust, cDPO, SimPO, ORPO, KTO): the policy trained on
 * preference data against a frozen reference, with no reward model and no rollouts.
 *
 *   runDpoTraining(config)      validate → policy, reference, tokenizer, data → DpoTrainer.train() → saved model
 *   DpoTrainer.computeLoss()    one micro-batch: reference log-probs (no gradient), the policy's, the loss, metrics
 *   DpoTrainer.train()          the loop: accumulate, step, check the numbers (NonFiniteGuard), log every
 *                               --logging_steps, evaluate every --eval_steps (else at each epoch's end), checkpoint
 *                               every --save_steps (pruned to --save_total_limit, --save_best), Ctrl-C, save
 *
 * Metric keys (TRL's): train/loss, rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
 * logps/chosen, logps/rejected, logits/chosen, logits/rejected (objective/kl for kto), train/lr, train/grad_norm,
 * train/epoch, time/pairs_per_s, time/tokens_per_s; evaluation logs the same with the eval/ prefix.
 */
import { join, resolve } from 'node:path';
import { tf } from '../engine/tf.js';
import { initBackend } from '../engine/backend.js';
import type { BatchLoader } from '../data/batching.js';
import { resolvePromptTemplate } from '../data/templates/index.js';
import { tokenizerAddsBos } from '../data/pair_tokens.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { adapterBase } from '../models/adapter_dir.js';
import type { DecoderModel } from '../models/decoder.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import { loadPretrained } from '../models/pretrained.js';
import { packFrozenModel, type FrozenDtype } from '../models/frozen_dtype.js';
import { createStrategy, type Strategy } from '../strategies/strategy.js';
import { Optimization } from '../trainer/optimization.js';
import {
  checkResumeNotFinished, readResumableState, saveCheckpoint, saveFinalCheckpoint, type CheckpointContents,
} from '../trainer/stage_checkpoint.js';
import type { TrainerState } from '../trainer/checkpoint_io.js';
import { checkResumeFixed, loopTrainerState, nullStream, restoreLoopState } from '../trainer/loop_state.js';
import { recoverRunDirs } from '../trainer/final_save.js';
import { MetricsLogger, RunningMean } from '../trainer/metrics.js';
import { TrainingProgress } from '../trainer/progress.js';
import { onInterrupt, stepBoundary, type InterruptFlag } from '../trainer/interrupt.js';
import { NonFiniteGuard } from '../trainer/nonfinite_guard.js';
import { LoopControls, epochsFor, totalStepsFor } from '../trainer/loop_controls.js';
import { scheduleFor } from '../trainer/schedule_config.js';
import { deriveBatch } from '../trainer/batch_size.js';
import { defaultDpoBestMetric, dpoEvalMetrics, resolveDpoConfig, type DpoConfig, type DpoConfigInput } from './config.js';
import { collateDpoPairs, collateKto, tokenizeDpoPairs, tokenizeKtoExamples, type DpoBatch, type DpoPair, type KtoExample } from './data.js';
import { loadDpoData } from './load_data.js';
import { needsReference } from './losses.js';
import { dpoObjective, referenceRowLogps, type ReferenceSource } from './objective.js';

/** Name of the optimizer inside optimizer.safetensors. */
export const OPTIMIZER_NAME = 'policy';

/** `--prompt_template auto` for a model with no recorded template and no chat template. */
export const DPO_FALLBACK_TEMPLATE = 'alpaca';

/** Config fields that fix the data order, the model's shape and the objective: --resume must use the same values. */
const RESUME_FIXED: [keyof DpoConfig, string][] = [
  ['dataset', 'dataset'], ['evalDataset', 'eval_dataset'], ['evalRatio', 'eval_ratio'], ['maxDatasetsSize', 'max_datasets_size'],
  ['test', 'test'], ['maxLen', 'max_len'], ['promptTemplate', 'prompt_template'], ['batchSize', 'batch_size'],
  ['accumulationSteps', 'accumulation_steps'], ['seed', 'seed'], ['loraRank', 'lora_rank'], ['lossType', 'loss_type'],
  ['beta', 'beta'], ['refModel', 'ref_model'],
];

export type DpoItem = DpoPair | KtoExample;

export interface DpoRunResult {
  outputDir: string;
  interrupted: boolean;
  steps: number;
  /** Per epoch: the means of the training metrics and the last evaluation (null without held-out data). */
  epochs: { epoch: number; train: Record<string, number>; eval: Record<string, number> | null }[];
}

export interface DpoRunOptions {
  log?: (line: string) => void;
  interrupt?: InterruptFlag;
  progress?: boolean;
}

export interface DpoTrainerParts {
  policy: DecoderModel;
  reference: ReferenceSource;
  tokenizer: Tokenizer;
  strategy: Strategy;
  train: DpoItem[];
  eval: DpoItem[];
  /** Directory a saved LoRA adapter names as its base; null: save merged full weights. */
  loraBase: string | null;
  /** The template the data was rendered with (recorded in trainer_state.json for --resume and the next stage). */
  templateName?: string;
}

/** The trainable parameters under stable names: the adapter's (PEFT names) with LoRA, else every weight. */
export function policyParameters(model: DecoderModel): [string, tf.Variable][] {
  if (model.lora) {
    return [...model.lora.modules].flatMap(([mod, { A, B }]): [string, tf.Variable][] => [[`${mod}.lora_A.weight`, A], [`${mod}.lora_B.weight`, B]]);
  }
  return model.namedParameters();
}

/** The id batches are padded with: the tokenizer's pad, the config's, else EOS. */
export function padTokenOf(tokenizer: Tokenizer, model: DecoderModel): number {
  const pad = tokenizer.padTokenId ?? model.config.padTokenId ?? tokenizer.eosTokenId;
  if (pad === null) throw new Error('the tokenizer has neither a pad nor an EOS token to pad batches with: set pad_token in tokenizer_config.json');
  return pad;
}

/** Items as the batch their loss takes: pairs, or kto examples with their KL samples. */
export function collateItems(lossType: DpoConfig['lossType'], items: readonly DpoItem[], padTokenId: number): DpoBatch {
  return lossType === 'kto' ? collateKto(items as KtoExample[], padTokenId) : collateDpoPairs(items as DpoPair[], padTokenId);
}

export class DpoTrainer {
  readonly config: DpoConfig;
  readonly policy: DecoderModel;
  readonly optimization: Optimization;
  readonly loader: BatchLoader<DpoItem, DpoBatch>;
  readonly padTokenId: number;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  /** Epochs the loop needs for totalSteps (more than --max_epochs when --max_steps asks for more). */
  readonly epochsToRun: number;
  /** --max_steps, --eval_steps, --logging_steps, --save_total_limit, --save_best (src/trainer/loop_controls.ts). */
  readonly controls: LoopControls;
  private readonly parts: DpoTrainerParts;
  private readonly strategy: Strategy;
  private readonly log: (line: string) => void;
  private readonly runOptions: DpoRunOptions;
  private logHistory: Record<string, number | null>[] = [];

  constructor(config: DpoConfig, parts: DpoTrainerParts, runOptions: DpoRunOptions = {}) {
    this.config = config;
    this.parts = parts;
    this.policy = parts.policy;
    this.strategy = parts.strategy;
    this.runOptions = runOptions;
    this.log = parts.strategy.isMain() ? (runOptions.log ?? ((l: string) => console.log(l))) : () => {};
    if (parts.train.length === 0) throw new Error('DpoTrainer: no training data');
    this.padTokenId = padTokenOf(parts.tokenizer, parts.policy);
    if (needsReference(config.lossType) && parts.reference.kind === 'none') throw new Error(`loss "${config.lossType}" needs a reference model`);
    this.loader = parts.strategy.createLoader(parts.train, { batchSize: config.batchSize, seed: config.seed, shuffle: true, collate: (items) => this.collate(items) });
    this.stepsPerEpoch = Math.ceil(this.loader.batchesPerEpoch / config.accumulationSteps);
    this.totalSteps = totalStepsFor(config.maxSteps, this.stepsPerEpoch * config.maxEpochs);
    this.epochsToRun = epochsFor(this.totalSteps, this.stepsPerEpoch);
    this.optimization = new Optimization(policyParameters(parts.policy), {
      lr: config.lr, weightDecay: config.weightDecay, gradClip: config.gradClip, accumulationSteps: config.accumulationSteps,
      ...scheduleFor(config, this.totalSteps),
    }, parts.strategy);
    this.controls = new LoopControls({ ...config, metricForBest: config.metricForBest ?? defaultDpoBestMetric(config.lossType) }, {
      savePath: config.savePath, totalSteps: this.totalSteps, resumeDir: config.resume, stage: 'train_dpo', log: this.log,
      evalMetrics: parts.eval.length ? dpoEvalMetrics(config.lossType) : [],
      noEval: 'there is no held-out data: give --eval_dataset or --eval_ratio > 0',
    });
  }

  collate(items: readonly DpoItem[]): DpoBatch {
    return collateItems(this.config.lossType, items, this.padTokenId);
  }

  /** The loss of a micro-batch (reference first, outside the gradient's reach), metrics into `aux`. */
  computeLoss(batch: DpoBatch, refRows: number[] | null, aux: Record<string, tf.Tensor>, training: boolean): tf.Scalar {
    // kto's KL baseline is averaged over the ranks in training (every rank runs the same micro-batches then); the
    // evaluation's shards may differ in batch count, so there each rank keeps its own
    const meanOverRanks = training && this.strategy.worldSize > 1 ? (x: number) => this.strategy.reduceMetrics({ x }).x! : undefined;
    return dpoObjective(this.policy, batch, refRows, { ...this.config, meanOverRanks }, aux, training);
  }

  /** The same metrics over held-out items (this rank's share), weighted by items, averaged over ranks. */
  evaluate(items: readonly DpoItem[] = this.parts.eval): Record<string, number> | null {
    if (items.length === 0) return null;
    const mine = this.strategy.shard(items);
    const sums = new Map<string, { s: number; n: number }>();
    const bs = Math.max(this.config.batchSize, 2);
    for (let i = 0; i < mine.length; i += bs) {
      const batch = this.collate(mine.slice(i, i + bs));
      const refRows = referenceRowLogps(this.parts.reference, batch);
      const values = tf.tidy(() => {
        const aux: Record<string, tf.Tensor> = {};
        const loss = this.computeLoss(batch, refRows, aux, false);
        return Object.fromEntries([['loss', loss.dataSync()[0]!], ...Object.entries(aux).map(([k, t]) => [k, t.dataSync()[0]!])]) as Record<string, number>;
      });
      const n = batch.items.length;
      for (const [k, v] of Object.entries(values)) {
        const acc = sums.get(k) ?? { s: 0, n: 0 };
        sums.set(k, { s: acc.s + v * n, n: acc.n + n });
      }
    }
    const local = Object.fromEntries([...sums].map(([k, { s, n }]) => [k === 'loss' ? 'eval/loss' : `eval/${k}`, s / n]));
    return this.reduceOverRanks(local);
  }

  /**
   * Metric means averaged over the ranks. kto's per-side metrics (rewards/*, logps/*) exist only where a batch had
   * examples of that side, so ranks may hold different keys: those are rank 0's own, the rest are all-reduced (an
   * all-reduce needs the same keys on every rank).
   */
  private reduceOverRanks(m: Record<string, number>): Record<string, number> {
    if (this.config.lossType !== 'kto' || this.strategy.worldSize === 1) return this.strategy.reduceMetrics(m);
    const sided = (k: string) => /^(eval\/)?(rewards|logps)\//.test(k);
    const shared = Object.fromEntries(Object.entries(m).filter(([k]) => !sided(k)));
    const own = Object.fromEntries(Object.entries(m).filter(([k]) => sided(k)));
    return { ...this.strategy.reduceMetrics(shared), ...own };
  }

  restore(state: TrainerState, dir: string): void {
    this.logHistory = restoreLoopState(this, state, dir, OPTIMIZER_NAME);
    this.log(`resumed from ${dir}: step ${state.global_step}/${this.totalSteps}, epoch ${state.epoch + 1}, batch ${state.step_in_epoch}`);
  }

  trainerState(): TrainerState {
    return loopTrainerState(this, {
      seed: this.config.seed, args: { ...this.config, promptTemplate: this.parts.templateName ?? this.config.promptTemplate },
      logHistory: this.logHistory, worldSize: this.strategy.worldSize,
    });
  }

  /** HF model dir (or PEFT adapter) + tokenizer + trainer state (+ optimizer state). Main rank only. */
  private contents(opts: { withOptimizer: boolean; merge: boolean }): CheckpointContents {
    return {
      model: this.policy, tokenizer: this.parts.tokenizer, mergeLora: opts.merge || this.parts.loraBase === null,
      baseModelPath: this.parts.loraBase ?? undefined,
      optimizers: opts.withOptimizer ? { [OPTIMIZER_NAME]: this.optimization } : undefined, trainerState: this.trainerState(),
    };
  }

  writeCheckpoint(dir: string, opts: { withOptimizer: boolean; merge: boolean }): Promise<void> {
    return saveCheckpoint(dir, this.contents(opts));
  }

  async save(dir: string, opts: { withOptimizer: boolean; merge: boolean }): Promise<void> {
    await this.strategy.saveOnMain(opts.withOptimizer ? [this.optimization] : [], () => this.writeCheckpoint(dir, opts));
  }

  /** Held-out metrics after `step`, logged and offered to --save_best. */
  private async evaluateAt(step: number, logger: MetricsLogger | null): Promise<Record<string, number> | null> {
    const ev = this.evaluate();
    if (!ev) return null;
    logger?.log(step, ev);
    this.logHistory.push({ step, ...ev });
    await this.controls.recordEval(step, ev, (dir) => this.save(dir, { withOptimizer: this.config.needOptimCkpt, merge: false }));
    return ev;
  }

  async train(): Promise<DpoRunResult> {
    const c = this.config;
    // A checkpoint that already finished the run is reported, not saved again as if it had trained.
    if (c.resume) checkResumeNotFinished(c.resume, { step: this.optimization.globalStep, total: this.totalSteps });
    const main = this.strategy.isMain();
    const guard = new NonFiniteGuard(c, { savePath: c.savePath, log: this.log });
    if (c.resume) guard.checkpointSaved(this.optimization.globalStep, c.resume);
    const logger = main ? new MetricsLogger(c.logDir ?? join(c.savePath, 'logs')) : null;
    const interrupt = this.runOptions.interrupt ?? onInterrupt();
    const showProgress = main && this.runOptions.progress !== false;
    const epochs: DpoRunResult['epochs'] = [];
    const window = { start: performance.now(), items: 0, tokens: 0 };
    const stepLoss = { sum: 0, micro: 0 };
    let progress: TrainingProgress | null = null;
    let lastEval: Record<string, number> | null = null;
    try {
      while (this.loader.position.epoch < this.epochsToRun && this.optimization.globalStep < this.totalSteps) {
        const epoch = this.loader.position.epoch;
        const running = new RunningMean();
        const epochMeans = new RunningMean();
        progress = new TrainingProgress({
          total: this.totalSteps, startStep: this.optimization.globalStep, label: `${c.lossType} epoch ${epoch + 1}/${this.epochsToRun}`,
          ...(showProgress ? {} : { bar: false, stream: nullStream() }),
        });
        while (this.loader.position.epoch === epoch) {
          // 1. a micro-batch: reference log-probs (no gradient), the policy's under the tape, the loss
          const microIndex = epoch * this.loader.batchesPerEpoch + this.loader.position.index;
          const { batch } = this.loader.next();
          const endOfEpoch = this.loader.position.epoch !== epoch;
          this.policy.setDropoutSeed((c.seed * 1_000_003 + microIndex) >>> 0);
          this.policy.lora?.setDropoutSeed(((c.seed * 1_000_003 + microIndex) ^ 0x5bd1e995) >>> 0);
          const refRows = referenceRowLogps(this.parts.reference, batch);
          const { loss, aux } = this.optimization.backward((auxT) => this.computeLoss(batch, refRows, auxT, true));
          const metrics = { 'train/loss': loss, ...aux };
          running.add(metrics);
          epochMeans.add(metrics);
          stepLoss.sum += loss;
          stepLoss.micro += 1;
          window.items += batch.items.length;
          window.tokens += batch.sequences.tokens;
          if (!this.optimization.ready() && !endOfEpoch) continue;

          // 2. optimizer step; the numbers checked (a stop throws before anything of this step is saved)
          const s = this.optimization.step();
          const step = this.optimization.globalStep;
          const meanLoss = this.strategy.reduceMetrics({ loss: stepLoss.sum / stepLoss.micro }).loss!;
          Object.assign(stepLoss, { sum: 0, micro: 0 });
          guard.check(step, { 'train/loss': meanLoss, 'train/grad_norm': s.gradNorm }, this.optimization.variables, 'train/loss');
          // 3. logging, periodic evaluation and checkpoint, Ctrl-C
          if (this.controls.logDue(step) || endOfEpoch) {
            const seconds = Math.max((performance.now() - window.start) / 1000, 1e-9);
            const pos = this.loader.position;
            const unit = c.lossType === 'kto' ? 'time/examples_per_s' : 'time/pairs_per_s';
            const record = {
              ...this.reduceOverRanks({ ...running.log('train'), 'train/lr': s.lr, 'train/grad_norm': s.gradNorm }),
              'train/epoch': pos.epoch + pos.index / this.loader.batchesPerEpoch,
              ...this.strategy.reduceMetrics({ [unit]: window.items / seconds, 'time/tokens_per_s': window.tokens / seconds }, 'sum'),
            };
            logger?.log(step, record);
            this.logHistory.push({ step, ...record });
            Object.assign(window, { start: performance.now(), items: 0, tokens: 0 });
          }
          progress.update(step, { loss, lr: s.lr, tokens: batch.sequences.tokens });
          // --eval_steps: every n steps and at the last (without it: at epoch ends, below)
          if (c.evalSteps > 0 && this.controls.evalDue(step, false)) lastEval = (await this.evaluateAt(step, logger)) ?? lastEval;
          const saved = this.controls.saveDue(step);
          if (saved) {
            const dir = this.controls.checkpointDir(step);
            await this.save(dir, { withOptimizer: c.needOptimCkpt, merge: false });
            guard.checkpointSaved(step, dir);
            if (main) for (const old of this.controls.afterCheckpoint()) this.log(`removed ${old} (--save_total_limit ${c.saveTotalLimit})`);
          }
          if ((await stepBoundary(interrupt, this.strategy)) && step < this.totalSteps) {
            progress.stop();
            const dir = this.controls.checkpointDir(step);
            if (!(saved && c.needOptimCkpt)) await this.save(dir, { withOptimizer: true, merge: false });
            this.log(`interrupted at step ${step}/${this.totalSteps}: saved ${dir}; continue with the same command plus --resume ${dir}`);
            return { outputDir: dir, interrupted: true, steps: step, epochs };
          }
          if (step >= this.totalSteps) break; // --max_steps reached inside the epoch
        }

        // 4. end of epoch: evaluation (without --eval_steps) and a summary line
        progress.stop();
        const trainMeans = this.reduceOverRanks(epochMeans.log('train'));
        if (c.evalSteps === 0) lastEval = (await this.evaluateAt(this.optimization.globalStep, logger)) ?? lastEval;
        epochs.push({ epoch, train: trainMeans, eval: lastEval });
        this.log(formatEpochSummary(epoch, this.epochsToRun, trainMeans, lastEval));
      }

      // 5. the final model in --save_path (keeping its checkpoint-* and logs subdirectories)
      logger?.close();
      await this.strategy.saveOnMain(c.needOptimCkpt ? [this.optimization] : [], () =>
        saveFinalCheckpoint(c.savePath, this.contents({ withOptimizer: c.needOptimCkpt, merge: c.mergeLoraWeights })),
      );
      this.log(`saved the policy to ${c.savePath}`);
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

export function formatEpochSummary(epoch: number, maxEpochs: number, train: Record<string, number>, ev: Record<string, number> | null): string {
  const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(4));
  let line = `epoch ${epoch + 1}/${maxEpochs} | train loss ${f(train['train/loss'])} acc ${f(train['rewards/accuracies'])} margin ${f(train['rewards/margins'])}`;
  if (ev) line += ` | eval loss ${f(ev['eval/loss'])} acc ${f(ev['eval/rewards/accuracies'])} margin ${f(ev['eval/rewards/margins'])}`;
  return line;
}

async function readResumeState(c: DpoConfig, worldSize: number): Promise<TrainerState> {
  const dir = c.resume!;
  const state = await readResumableState(dir, 'train_dpo');
  checkResumeFixed(dir, state, c, RESUME_FIXED, worldSize);
  if (c.loraRank > 0 && adapterBase(dir) === null) {
    throw new Error(`--resume ${dir}: it holds merged full weights, not the LoRA adapter being trained; start a new run from them with --pretrain ${dir}`);
  }
  return state;
}

/** A frozen model from a directory or Hub id, any adapter it carries merged in; packed with --frozen_dtype. */
async function loadFrozen(idOrDir: string, frozenDtype: FrozenDtype = 'float32'): Promise<DecoderModel> {
  const { model } = loadPretrained(await resolvePretrained(idOrDir), { frozenDtype });
  if (model.lora) {
    model.lora.mergeInto(model.params, model.spec);
    model.lora.dispose();
    model.lora = null;
  }
  packFrozenModel(model, frozenDtype);
  return model;
}

/** Reference log-probs of every item, stored on it (TRL's precompute_ref_log_probs). */
export function precomputeReference(ref: ReferenceSource, items: DpoItem[], collate: (items: DpoItem[]) => DpoBatch, batchSize: number): void {
  for (let i = 0; i < items.length; i += batchSize) {
    const chunk = items.slice(i, i + batchSize);
    const rows = referenceRowLogps(ref, collate(chunk))!;
    const B = chunk.length;
    chunk.forEach((it, j) => {
      if ('chosen' in it) Object.assign(it, { refChosen: rows[j], refRejected: rows[B + j] });
      else Object.assign(it, { ref: rows[j], refKl: rows[B + j] });
    });
  }
}

/** The whole stage, as `train_dpo` runs it. */
export async function runDpoTraining(input: DpoConfigInput, runOptions: DpoRunOptions = {}): Promise<DpoRunResult> {
  const log = runOptions.log ?? ((l: string) => console.log(l));
  // 1. validate everything before heavy work
  const c = resolveDpoConfig(input);
  const strategy = createStrategy(c.strategy);
  const say = strategy.isMain() ? log : () => {};
  const batch = deriveBatch(c, strategy.worldSize);
  Object.assign(c, { batchSize: batch.batchSize, accumulationSteps: batch.accumulationSteps });
  if (batch.note) say(batch.note);
  await initBackend(c.backend, say);
  // A crash mid-save is finished or undone before anything is read (main rank, then a barrier).
  await recoverRunDirs(strategy, [c.savePath, c.resume], say);
  const resumeState = c.resume ? await readResumeState(c, strategy.worldSize) : null;

  // 2. the policy (the checkpoint's when resuming) and its tokenizer
  const pretrainDir = await resolvePretrained(c.pretrain);
  const policyDir = c.resume ?? pretrainDir;
  const loaded = loadPretrained(policyDir);
  const policy = loaded.model;
  let reference: ReferenceSource = { kind: 'none' };
  try {
    if (c.modelType && c.modelType !== policy.config.modelType) throw new Error(`--model ${c.modelType} but ${policyDir}/config.json says model_type "${policy.config.modelType}"`);
    const tokenizer = await Tokenizer.fromDir(c.resume ? c.resume : (c.tokenizer ?? pretrainDir));
    // --prompt_template, else (auto) the one the policy (or the checkpoint resumed) was trained with, else the model's
    // chat template, else alpaca: the template PPO, GRPO and inference fall back to, so the policy is asked as it learned
    const { template, note } = resolvePromptTemplate(c.promptTemplate, tokenizer, DPO_FALLBACK_TEMPLATE, policyDir);
    say(note);
    const cameWithAdapter = policy.lora !== null;
    if (policy.lora && !resumeState) {
      policy.lora.mergeInto(policy.params, policy.spec);
      policy.lora.dispose();
      policy.lora = null;
      say('--pretrain holds a LoRA adapter: merged it into its base weights');
    }
    if (c.loraRank > 0 && !policy.lora) {
      const targets = c.loraTargets ?? DEFAULT_LORA_TARGETS[policy.config.modelType] ?? 'all-linear';
      policy.lora = LoraAdapter.create(policy.spec, { r: c.loraRank, alpha: c.loraAlpha, dropout: c.loraDropout, targetModules: targets }, c.seed);
    }
    // A saved adapter must name base weights that stay on disk; after merging an SFT adapter there are none: save merged.
    const loraBase = c.resume ? adapterBase(c.resume) : cameWithAdapter ? null : resolve(policyDir);
    if (c.loraRank > 0 && loraBase === null && !c.mergeLoraWeights) say('the LoRA adapter will be saved merged into full weights (its base is not a plain model directory)');
    if (c.loraRank > 0 && c.frozenDtype && c.frozenDtype !== 'float32') {
      // The base under the adapter is frozen: packed (the final save then cannot merge, so it needs a plain base).
      if (loraBase === null) throw new Error(`--frozen_dtype ${c.frozenDtype}: the adapter would be saved merged into its packed base (--pretrain is itself an adapter); give its merged (full) model as --pretrain`);
      packFrozenModel(policy, c.frozenDtype);
    }
    const maxPos = policy.config.maxPositions;
    if (c.maxLen > maxPos) throw new Error(`--max_len ${c.maxLen} exceeds the model's ${maxPos} positions: use --max_len ${maxPos} or less`);

    // 3. the reference: none, a separate frozen model, or the policy's base with the adapter off
    if (needsReference(c.lossType)) {
      if (c.refModel) reference = { kind: 'model', model: await loadFrozen(c.refModel, c.frozenDtype) };
      else if (c.loraRank > 0) reference = { kind: 'adapter_off', model: policy };
      else reference = { kind: 'model', model: await loadFrozen(pretrainDir, c.frozenDtype) };
      say(`reference: ${reference.kind === 'adapter_off' ? 'the policy with its LoRA adapter off (no second copy)' : `${c.refModel ?? pretrainDir}, frozen`}`);
    } else {
      say(`loss ${c.lossType} is reference-free: no reference model loaded`);
    }
    if (reference.kind === 'model' && reference.model.config.vocabSize !== policy.config.vocabSize) {
      throw new Error(`--ref_model ${c.refModel}: vocabulary of ${reference.model.config.vocabSize} tokens, the policy's has ${policy.config.vocabSize}; the reference must share the tokenizer`);
    }

    // 4. data
    const data = await loadDpoData(c);
    for (const note of data.notes) say(`data: ${note}`);
    // a chat template's text holds its own BOS
    const tokOpts = { maxLen: c.maxLen, addBos: !template.ownsSpecialTokens && tokenizerAddsBos(tokenizer) };
    const tok = (split: 'train' | 'eval') =>
      c.lossType === 'kto'
        ? tokenizeKtoExamples(data.unpaired![split], template, tokenizer, { ...tokOpts, batchSize: c.batchSize, seed: c.seed })
        : tokenizeDpoPairs(data.pairs![split], template, tokenizer, tokOpts);
    const train = tok('train');
    const evalSet = tok('eval');
    const s = train.stats;
    say(
      `data: ${s.items} train / ${evalSet.stats.items} eval ${c.lossType === 'kto' ? 'examples' : 'pairs'} tokenized; of the train sequences ${s.promptTruncated} had ` +
        `their prompt cut on the left and ${s.answerTruncated} their answer cut on the right (--max_len ${c.maxLen}); ` +
        `${s.droppedIdentical + evalSet.stats.droppedIdentical} pairs with identical answers dropped`,
    );
    if (train.items.length === 0) throw new Error(`${c.dataset}: no usable training data after tokenization`);

    // 5. the reference's log-probs once, then free it (--precompute_ref_log_probs)
    if (c.precomputeRefLogProbs && reference.kind !== 'none') {
      const t0 = performance.now();
      const pad = padTokenOf(tokenizer, policy);
      const collate = (items: DpoItem[]) => collateItems(c.lossType, items, pad);
      precomputeReference(reference, train.items, collate, Math.max(c.batchSize, 8));
      precomputeReference(reference, evalSet.items, collate, Math.max(c.batchSize, 8));
      if (reference.kind === 'model') reference.model.dispose();
      reference = { kind: 'precomputed' };
      say(`reference log-probs precomputed for ${train.items.length + evalSet.items.length} items in ${((performance.now() - t0) / 1000).toFixed(1)} s; the reference is freed`);
    }

    // 6. train
    const trainer = new DpoTrainer(c, { policy, reference, tokenizer, strategy, train: train.items, eval: evalSet.items, loraBase, templateName: template.name }, { ...runOptions, log });
    try {
      if (resumeState) trainer.restore(resumeState, c.resume!);
      return await trainer.train();
    } finally {
      trainer.dispose();
    }
  } finally {
    if (reference.kind === 'model') reference.model.dispose();
    policy.dispose();
  }
}

