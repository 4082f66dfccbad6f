/**
 * Stage 1: supervised fine-tuning (and continued pretraining) of a causal LM.
 *
 *   const trainer = await SftTrainer.create(config);   // validate, load model + data; writes nothing
 *   const result = await trainer.train();               // steps, eval, checkpoints, Ctrl-C, final save
 *   trainer.dispose();
 *
 * Resume is exact: the data order is a pure function of (seed, epoch), the loader position, optimizer moments,
 * global step and dropout RNG state are saved in every checkpoint, and restored by `--resume`.
 */
import { readFileSync, existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { tf } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { AUTO_TEMPLATE, IGNORE_INDEX, padBatch, type BatchLoader, type Batch, type TokenizedSample } from '../data/index.js';
import { resolvePretrained } from '../hub/hf_cache.js';
import { Tokenizer } from '../hub/tokenizer.js';
import { refuseScoringModel } from '../hub/checkpoint_kind.js';
import type { DecoderModel } from '../models/decoder.js';
import { DEFAULT_LORA_TARGETS, LoraAdapter } from '../models/lora.js';
import { hasTokenizerFiles, loadPretrained } from '../models/pretrained.js';
import { PrefixTuningAdapter } from '../models/prefix_tuning.js';
import { PromptTuningAdapter } from '../models/prompt_tuning.js';
import { causalLmLossWithAdapter } from '../models/virtual_tokens.js';
import { readPeftAdapterConfig } from '../hub/peft_files.js';
import { createStrategy, type Strategy } from '../strategies/strategy.js';
import { Optimization } from '../trainer/optimization.js';
import {
  checkResumeNotFinished, noteResumeChanges, readResumableState, saveCheckpoint, saveFinalCheckpoint,
} from '../trainer/stage_checkpoint.js';
import { resumeMismatches, type TrainerState } from '../trainer/checkpoint_io.js';
import { loopTrainerState, nullStream, restoreLoopState } from '../trainer/loop_state.js';
import { MetricsLogger } from '../trainer/metrics.js';
import { TrainingProgress } from '../trainer/progress.js';
import { onInterrupt, stepBoundary, type InterruptFlag } from '../trainer/interrupt.js';
import { recoverRunDirs } from '../trainer/final_save.js';
import { NonFiniteGuard } from '../trainer/nonfinite_guard.js';
import { warmupStepsFromRatio } from '../trainer/schedule.js';
import { LoopControls, totalStepsFor } from '../trainer/loop_controls.js';
import { scheduleFor } from '../trainer/schedule_config.js';
import { deriveBatch } from '../trainer/batch_size.js';
import { TokenBlockLoader } from '../data/token_bin.js';
import { prepareBinData, usesTokenBins, type BinTrainData } from './bin_data.js';
import {
  CHAR_TOKENIZER, DEFAULT_NUM_VIRTUAL_TOKENS, RESUME_FIXED_FIELDS, RESUME_NOTED_FIELDS, peftMethodOf, resolveSftConfig, validateSftConfig,
  type PeftMethod, type SftConfig, type SftConfigInput,
} from './config.js';
import { detectDataMode, prepareChatData, prepareTextData, readCorpusTexts, type PreparedSftData, type SftDataOptions } from './data.js';
import { charTokenizerFor, configForTokenizer, modelFromConfig, rawConfigFromSpec } from './from_config.js';
import { packFrozenModel } from '../models/frozen_dtype.js';

/** Name of the optimizer inside optimizer.safetensors. */
const OPTIMIZER_NAME = 'model';

export interface SftRunOptions {
  /** Where progress notes go (default: stderr). */
  log?: (message: string) => void;
  /** Polled between steps; when set, a resumable checkpoint is saved and train() returns. Default: Ctrl-C/SIGTERM. */
  interrupt?: InterruptFlag;
  /** Progress bar / lines on stdout (default true). */
  progress?: boolean;
}

export interface TrainStepResult {
  /** Optimizer steps taken, this one included. */
  step: number;
  /** Mean loss of the step's micro-batches. */
  loss: number;
  lr: number;
  gradNorm: number;
  /** True when the step was skipped for a non-finite gradient. */
  skipped: boolean;
  /** Real (non-padding) tokens in the step. */
  tokens: number;
  seconds: number;
  /** Fractional epoch after the step (2.5: half-way through the third). */
  epoch: number;
}

export interface EvalResult {
  loss: number;
  perplexity: number;
  /** Label tokens the loss averages over. */
  tokens: number;
}

export interface SftResult {
  /** Optimizer steps taken in total (resumed steps included). */
  steps: number;
  /** True when stopped by an interrupt: `outputDir` is then the resumable checkpoint. */
  interrupted: boolean;
  outputDir: string;
  /** Evaluations of this run, in order. */
  evals: (EvalResult & { step: number })[];
  /** Loss of the last training step. */
  lastLoss: number | null;
}

/** Pieces `create` assembles before the trainer exists. */
interface Assembled {
  config: SftConfig;
  strategy: Strategy;
  model: DecoderModel;
  tokenizer: Tokenizer;
  data: PreparedSftData;
  baseModelPath: string | undefined;
  resumeState: TrainerState | null;
  log: (message: string) => void;
  /** `.bin` token files: the training tokens (the loader draws blocks of them). */
  binTrain: BinTrainData | null;
}

export class SftTrainer {
  readonly config: SftConfig;
  readonly model: DecoderModel;
  readonly tokenizer: Tokenizer;
  readonly data: PreparedSftData;
  readonly optimization: Optimization;
  /** Optimizer steps of the whole run. */
  readonly totalSteps: number;
  readonly loader: BatchLoader<TokenizedSample, Batch>;
  private readonly strategy: Strategy;
  private readonly evalBatches: Batch[];
  private readonly baseModelPath: string | undefined;
  private readonly log: (message: string) => void;
  private readonly runOptions: SftRunOptions;
  private dropoutRng: Rng;
  /** --max_steps, --eval_steps, --logging_steps, --save_total_limit, --save_best (src/trainer/loop_controls.ts). */
  readonly controls: LoopControls;
  private logHistory: Record<string, number | null>[] = [];

  private constructor(a: Assembled, runOptions: SftRunOptions) {
    const c = a.config;
    this.config = c;
    this.strategy = a.strategy;
    this.model = a.model;
    this.tokenizer = a.tokenizer;
    this.data = a.data;
    this.baseModelPath = a.baseModelPath;
    // Under ddp/zero2 every rank runs this; only rank 0 prints.
    this.log = a.strategy.isMain() ? a.log : () => {};
    this.runOptions = runOptions;
    const padTokenId = a.tokenizer.padTokenId ?? a.tokenizer.eosTokenId ?? 0;
    const collate = (xs: TokenizedSample[]) => padBatch(xs, { padTokenId });
    this.loader = a.binTrain
      ? new TokenBlockLoader(a.binTrain.tokens, a.binTrain.file, {
        blockSize: c.maxLen, batchSize: c.batchSize, seed: c.seed, rank: a.strategy.rank, worldSize: a.strategy.worldSize, sequential: c.sequential, collate,
      })
      : this.strategy.createLoader(a.data.train, { batchSize: c.batchSize, seed: c.seed, shuffle: true, collate });
    this.evalBatches = [];
    for (let i = 0; i < a.data.eval.length; i += c.batchSize) this.evalBatches.push(collate(a.data.eval.slice(i, i + c.batchSize)));

    // Micro-batches run as one stream across epochs, so no batch is dropped at an epoch edge.
    this.totalSteps = totalStepsFor(c.maxSteps, Math.floor((this.loader.batchesPerEpoch * c.maxEpochs) / c.accumulationSteps));
    if (this.totalSteps < 1) {
      throw new Error(
        `${this.loader.batchesPerEpoch * c.maxEpochs} micro-batch(es) in ${c.maxEpochs} epoch(s) make no optimizer step of ` +
          `${c.accumulationSteps}: lower --accumulation_steps or --batch_size, or raise --max_epochs`,
      );
    }
    // PEFT methods train their adapter only; the frozen model's weights get no gradient and no update.
    const trainable: [string, tf.Variable][] = a.model.lora
      ? [...a.model.lora.modules].flatMap(([mod, { A, B }]) => [[`${mod}.lora_A.weight`, A], [`${mod}.lora_B.weight`, B]] as [string, tf.Variable][])
      : a.model.virtualTokens
        ? a.model.virtualTokens.trainableVariables().map((v) => ['prompt_embeddings', v] as [string, tf.Variable])
        : a.model.namedParameters();
    this.optimization = new Optimization(trainable, {
      lr: c.lr, weightDecay: c.weightDecay, gradClip: c.gradClip, accumulationSteps: c.accumulationSteps, ...scheduleFor(c, this.totalSteps),
    }, this.strategy);
    this.controls = new LoopControls(c, {
      savePath: c.savePath, totalSteps: this.totalSteps, resumeDir: c.resume, stage: 'train_sft', log: this.log,
      evalMetrics: this.evalBatches.length ? ['eval/loss', 'eval/perplexity'] : [],
      noEval: 'train_sft has no held-out data: give --eval_dataset (or --eval_ratio)',
    });
    this.dropoutRng = new Rng((c.seed ^ 0x5eed) >>> 0);
    if (a.resumeState) this.restore(a.resumeState);
  }

  /** Validates the config, loads model, tokenizer and data. Writes nothing (only repairs what a crash left in save_path or --resume). */
  static async create(input: SftConfigInput, runOptions: SftRunOptions = {}): Promise<SftTrainer> {
    const config = resolveSftConfig(input);
    validateSftConfig(config);
    const strategy = createStrategy(config.strategy);
    const log = runOptions.log ?? ((m: string) => console.error(m));
    await recoverRunDirs(strategy, [config.savePath, config.resume], log);
    const batch = deriveBatch(config, strategy.worldSize);
    Object.assign(config, { batchSize: batch.batchSize, accumulationSteps: batch.accumulationSteps });
    if (batch.note && strategy.isMain()) log(batch.note);
    const resumeState = config.resume ? await readResumeState(config, strategy.worldSize, strategy.isMain() ? log : () => {}) : null;
    const dataOpts: SftDataOptions = { ...config };
    const bins = usesTokenBins(config);
    const mode = bins ? 'text' : await detectDataMode([...config.dataset, ...config.evalDataset], dataOpts);
    if (config.tokenizer === CHAR_TOKENIZER && mode !== 'text') {
      throw new Error('--tokenizer char builds its vocabulary from a plain-text corpus (.txt or `text` records), but the datasets hold chat data');
    }

    const { model, tokenizer, baseModelPath } = await loadModel(config, dataOpts, log);
    try {
      checkFit(config, model, tokenizer);
      const modelDir = config.resume ?? config.pretrain;
      const binData = bins ? prepareBinData(tokenizer, config) : null;
      const data = binData?.data ?? (mode === 'text' ? await prepareTextData(tokenizer, dataOpts) : await prepareChatData(tokenizer, dataOpts, modelDir));
      for (const note of data.notes) log(`data: ${note}`);
      const binTrain = binData?.train ?? null;
      const trainer = new SftTrainer({ config, strategy, model, tokenizer, data, baseModelPath, resumeState, log, binTrain }, runOptions);
      trainer.describe();
      return trainer;
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  /** Causal-LM loss on a padded batch: logits at t predict labels[t+1]; -100 labels (prompt, padding) are ignored. */
  computeLoss(batch: Batch, training: boolean): tf.Scalar {
    return tf.tidy(() => {
      const ids = tf.tensor2d(batch.inputIds, undefined, 'int32'); // (B, T)
      // A batch without padding (every packed text or token-file block) needs no padding mask.
      const padded = batch.attentionMask.some((row) => row.includes(0));
      const mask = padded ? tf.tensor2d(batch.attentionMask, undefined, 'int32') : undefined; // (B, T)
      const labels = tf.tensor2d(batch.labels, undefined, 'int32'); // (B, T), or (B, T + 1) for token-file blocks
      // No (B, T, V) logits; with prompt tuning the last virtual position predicts the first label, as PEFT.
      return causalLmLossWithAdapter(this.model, ids, labels, { attentionMask: mask, training }) as tf.Scalar;
    });
  }

  /** One optimizer step: `accumulationSteps` micro-batches, then clip + AdamW at the scheduled lr. */
  trainStep(): TrainStepResult {
    const t0 = performance.now();
    let lossSum = 0;
    let micro = 0;
    let tokens = 0;
    while (!this.optimization.ready()) {
      const { batch } = this.loader.next();
      // Dropout masks come from a saved stream, so a resumed run draws the same ones (two seeds per micro-batch).
      const [modelSeed, loraSeed] = [this.dropoutRng.seed(), this.dropoutRng.seed()];
      this.model.setDropoutSeed(modelSeed);
      this.model.lora?.setDropoutSeed(loraSeed);
      lossSum += this.optimization.backward(() => this.computeLoss(batch, true)).loss;
      micro += 1;
      for (const row of batch.attentionMask) for (const m of row) tokens += m;
    }
    const { lr, gradNorm, skipped } = this.optimization.step();
    const pos = this.loader.position;
    const { loss } = this.strategy.reduceMetrics({ loss: lossSum / micro }, 'mean') as { loss: number };
    const { total } = this.strategy.reduceMetrics({ total: tokens }, 'sum') as { total: number };
    return {
      step: this.optimization.globalStep, loss, lr, gradNorm, skipped, tokens: total,
      seconds: (performance.now() - t0) / 1000, epoch: pos.epoch + pos.index / this.loader.batchesPerEpoch,
    };
  }

  /** Mean loss over every label token of the held-out set, and its perplexity; null without held-out data. */
  evaluate(): EvalResult | null {
    if (!this.evalBatches.length) return null;
    let sum = 0;
    let count = 0;
    for (const batch of this.evalBatches) {
      // Tokens the loss averages over: labels after the shift (labels[0] is no position's target; T of them per
      // token-file block, whose labels run one past the inputs).
      const n = batch.labels.reduce((s, row) => s + row.slice(1).filter((l) => l !== IGNORE_INDEX).length, 0);
      if (n === 0) continue;
      const loss = tf.tidy(() => this.computeLoss(batch, false).dataSync()[0]!);
      sum += loss * n;
      count += n;
    }
    if (count === 0) return null;
    const loss = sum / count;
    return { loss, perplexity: Math.exp(loss), tokens: count };
  }

  /** The training loop: metrics every step, eval at epoch ends and save steps, checkpoints, Ctrl-C, final save. */
  async train(): Promise<SftResult> {
    const c = this.config;
    // A checkpoint that already finished the run is reported, not saved again as if it had trained.
    if (c.resume) checkResumeNotFinished(c.resume, { step: this.optimization.globalStep, total: this.totalSteps });
    const guard = new NonFiniteGuard(c, { savePath: c.savePath, log: this.log });
    const main = this.strategy.isMain();
    const logger = main ? new MetricsLogger(c.logDir ?? join(c.savePath, 'logs')) : null;
    const progress = new TrainingProgress({
      total: this.totalSteps, startStep: this.optimization.globalStep, label: 'sft',
      ...(this.runOptions.progress === false ? { bar: false, stream: nullStream() } : {}),
    });
    const interrupt = this.runOptions.interrupt ?? onInterrupt();
    if (c.resume) guard.checkpointSaved(this.optimization.globalStep, c.resume);
    const evals: SftResult['evals'] = [];
    let lastLoss: number | null = null;
    try {
      // Eval loss before any update (step 0), so a run shows where it started.
      if (this.optimization.globalStep === 0) {
        const ev = this.evaluate();
        if (ev) {
          logger?.log(0, { 'eval/loss': ev.loss, 'eval/perplexity': ev.perplexity });
          evals.push({ step: 0, ...ev });
          this.log(`eval before training: loss ${ev.loss.toFixed(4)}, perplexity ${ev.perplexity.toFixed(2)}`);
        }
      }
      while (this.optimization.globalStep < this.totalSteps) {
        const epochBefore = this.loader.position.epoch;
        const s = this.trainStep();
        lastLoss = s.loss;
        // Stops (throws) before anything of this step is saved when a number has gone bad.
        guard.check(s.step, { 'train/loss': s.loss, 'train/grad_norm': s.gradNorm }, this.optimization.variables, 'train/loss');
        const metrics: Record<string, number> = {
          'train/loss': s.loss, 'train/lr': s.lr, 'train/grad_norm': s.gradNorm,
          'train/tokens_per_s': s.tokens / Math.max(s.seconds, 1e-9), 'train/epoch': s.epoch, 'train/tokens': s.tokens,
        };
        const saveDue = this.controls.saveDue(s.step);
        const epochEnded = this.loader.position.epoch > epochBefore;
        let evaluated = false;
        // Without --eval_steps: at epoch ends and save steps, as before.
        if (this.controls.evalDue(s.step, epochEnded || saveDue)) {
          const ev = this.evaluate();
          if (ev) {
            metrics['eval/loss'] = ev.loss;
            metrics['eval/perplexity'] = ev.perplexity;
            evals.push({ step: s.step, ...ev });
            evaluated = true;
            await this.controls.recordEval(s.step, metrics, (dir) => this.saveCheckpoint(dir, c.needOptimCkpt));
          }
        }
        if (evaluated || this.controls.logDue(s.step)) {
          logger?.log(s.step, metrics);
          this.logHistory.push({ step: s.step, ...metrics });
        }
        progress.update(s.step, { loss: s.loss, lr: s.lr, tokens: s.tokens });
        if (saveDue) {
          const dir = this.controls.checkpointDir(s.step);
          await this.saveCheckpoint(dir, c.needOptimCkpt);
          guard.checkpointSaved(s.step, dir);
          if (main) for (const old of this.controls.afterCheckpoint()) this.log(`removed ${old} (--save_total_limit ${c.saveTotalLimit})`);
        }
        if ((await stepBoundary(interrupt, this.strategy)) && s.step < this.totalSteps) {
          progress.stop();
          const dir = join(c.savePath, `checkpoint-${s.step}`);
          if (!(saveDue && c.needOptimCkpt)) await this.saveCheckpoint(dir, true); // unless just written, resumable
          this.log(`interrupted at step ${s.step}/${this.totalSteps}: saved ${dir}; continue with the same command plus --resume ${dir}`);
          return { steps: s.step, interrupted: true, outputDir: dir, evals, lastLoss };
        }
      }
      progress.stop();
      logger?.close();
      await this.saveFinal();
      this.log(`saved the ${(this.model.lora && !c.mergeLoraWeights) || this.model.virtualTokens ? 'PEFT adapter' : 'model'} to ${c.savePath}`);
      const best = this.controls.bestSummary();
      if (best) this.log(best);
      return { steps: this.optimization.globalStep, interrupted: false, outputDir: c.savePath, evals, lastLoss };
    } finally {
      progress.stop();
      logger?.close();
      if (!this.runOptions.interrupt) interrupt.dispose();
    }
  }

  /** Everything `--resume` needs besides weights and optimizer state. */
  trainerState(): TrainerState {
    return loopTrainerState(this, {
      seed: this.config.seed, rng: { dropout: this.dropoutRng.getState() }, args: this.config, logHistory: this.logHistory, worldSize: this.strategy.worldSize,
    });
  }

  /**
   * A resumable checkpoint: weights (LoRA: the adapter, unmerged), tokenizer, trainer state, optimizer state.
   * Called on every rank (the strategy gathers sharded optimizer state); rank 0 writes.
   */
  async saveCheckpoint(dir: string, withOptimizer: boolean): Promise<void> {
    const optimizers = withOptimizer ? { [OPTIMIZER_NAME]: this.optimization } : undefined;
    await this.strategy.saveOnMain(withOptimizer ? [this.optimization] : [], () =>
      saveCheckpoint(dir, {
        model: this.model, tokenizer: this.tokenizer, mergeLora: false, baseModelPath: this.baseModelPath,
        optimizers, trainerState: this.trainerState(), configExtra: this.configExtra(),
      }),
    );
  }

  /** config.json's record of the prompt template (chat data), which later stages use when given none. */
  private configExtra(): Record<string, unknown> | undefined {
    return this.data.templateName ? { rlhf: { kind: 'sft', prompt_template: this.data.templateName } } : undefined;
  }

  /** The run's output in --save_path (merged with --merge_lora_weights), keeping its checkpoint and log dirs. */
  private async saveFinal(): Promise<void> {
    const c = this.config;
    const optimizers = c.needOptimCkpt ? { [OPTIMIZER_NAME]: this.optimization } : undefined;
    await this.strategy.saveOnMain(c.needOptimCkpt ? [this.optimization] : [], () =>
      saveFinalCheckpoint(c.savePath, {
        model: this.model, tokenizer: this.tokenizer, mergeLora: c.mergeLoraWeights, baseModelPath: this.baseModelPath,
        optimizers, trainerState: this.trainerState(), configExtra: this.configExtra(),
      }),
    );
  }

  private restore(state: TrainerState): void {
    const dir = this.config.resume!;
    this.logHistory = restoreLoopState(this, state, dir, OPTIMIZER_NAME);
    const dropout = state.rng_state.dropout;
    if (dropout !== undefined) this.dropoutRng = Rng.fromState(dropout);
    this.log(`resumed from ${dir} at step ${state.global_step} (epoch ${state.epoch}, batch ${state.step_in_epoch})`);
  }

  private describe(): void {
    const count = (vs: tf.Variable[]) => vs.reduce((s, v) => s + v.size, 0);
    const all = count([...this.model.params.values()]) + [...this.model.packed.values()].reduce((s, w) => s + w.shape[0] * w.shape[1], 0);
    const adapter = this.model.lora ?? this.model.virtualTokens;
    const trained = adapter ? count(adapter.trainableVariables()) : all;
    const vt = this.model.virtualTokens;
    const method = this.model.lora ? ` (LoRA r=${this.model.lora.config.r})` : vt ? ` (${vt.kind} tuning, ${vt.numVirtualTokens} virtual tokens)` : '';
    const train = this.data.train.length || `${this.loader.batchesPerEpoch * this.config.batchSize} (per epoch)`;
    this.log(
      `sft: ${train} train / ${this.data.eval.length} eval ${this.data.mode === 'text' ? 'blocks' : 'samples'}, ` +
        `${this.loader.batchesPerEpoch} batches per epoch, ${this.totalSteps} optimizer steps; training ${trained.toLocaleString('en')} ` +
        `of ${all.toLocaleString('en')} parameters${method}`,
    );
  }

  dispose(): void {
    this.optimization.dispose();
    this.model.dispose();
  }
}

/** Validate-and-run: the whole of `train_sft`. Returns after the final save (or an interrupt checkpoint). */
export async function trainSft(input: SftConfigInput, runOptions: SftRunOptions = {}): Promise<SftResult> {
  const trainer = await SftTrainer.create(input, runOptions);
  try {
    return await trainer.train();
  } finally {
    trainer.dispose();
  }
}

/** The checkpoint's trainer state, checked against this run's config. */
async function readResumeState(c: SftConfig, worldSize: number, log: (m: string) => void): Promise<TrainerState> {
  const dir = c.resume!;
  const state = await readResumableState(dir, 'train_sft');
  // With no --prompt_template (auto) the run takes the template the checkpoint recorded, so that one always matches.
  const current = c.promptTemplate === AUTO_TEMPLATE ? { ...c, promptTemplate: state.args.promptTemplate } : c;
  const changed = resumeMismatches(state, current as unknown as Record<string, unknown>, RESUME_FIXED_FIELDS, worldSize);
  if (changed.length) {
    throw new Error(
      `--resume ${dir}: these options differ from the run that wrote it, so its data position and schedule do not apply: ` +
        changed.map((m) => `${m.field} was ${m.was}, now ${m.now}`).join('; '),
    );
  }
  noteResumeChanges(dir, state, c as unknown as Record<string, unknown>, RESUME_NOTED_FIELDS, log);
  return state;
}

/** Model + tokenizer for the run: from a checkpoint (resume), a fresh config, or a pretrained directory. */
async function loadModel(
  c: SftConfig, dataOpts: SftDataOptions, log: (m: string) => void,
): Promise<{ model: DecoderModel; tokenizer: Tokenizer; baseModelPath: string | undefined }> {
  if (c.resume) {
    const dir = c.resume;
    const adapterOnly = !existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'adapter_config.json'));
    const { model } = loadPretrained(dir, { promptLearning: true });
    const method = peftMethodOf(c);
    if (method !== adapterMethod(model)) {
      model.dispose();
      if (method === 'lora' && !model.virtualTokens) throw new Error(`--resume ${dir} holds merged weights, not a LoRA adapter: resume from one of the checkpoint-<step> directories`);
      throw new Error(`--resume ${dir} holds ${describeMethod(adapterMethod(model))} but this run trains ${describeMethod(method)}: resume with the flags of the run that wrote it`);
    }
    const tokenizer = await withModel(model, () => Tokenizer.fromDir(dir));
    let baseModelPath: string | undefined;
    if (adapterOnly) {
      const base = (JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as { base_model_name_or_path: string }).base_model_name_or_path;
      baseModelPath = isAbsolute(base) ? base : resolve(dir, base);
    }
    return { model, tokenizer, baseModelPath };
  }

  if (c.fromConfig) {
    const spec = rawConfigFromSpec(c.fromConfig, c.model);
    if (c.model && spec.raw.model_type !== c.model) throw new Error(`--model ${c.model} but --from_config describes a ${String(spec.raw.model_type)} model`);
    const tokenizer = c.tokenizer === CHAR_TOKENIZER
      ? charTokenizerFor(await readCorpusTexts(c.dataset, dataOpts))
      : await Tokenizer.fromDir(await resolvePretrained(c.tokenizer!));
    if (c.tokenizer === CHAR_TOKENIZER) log(`tokenizer: ${tokenizer.vocabSize} tokens (characters of the corpus + <unk>, <|endoftext|>)`);
    const config = configForTokenizer(spec, tokenizer, c.maxLen);
    return { model: modelFromConfig(config, c.seed), tokenizer, baseModelPath: undefined };
  }

  const dir = await resolvePretrained(c.pretrain!);
  refuseScoringModel(dir, '--pretrain', 'train_sft fine-tunes a language model: pass the base or SFT model (a reward model is trained further with train_reward_model).');
  const { model } = loadPretrained(dir, { promptLearning: true });
  if (c.model && c.model !== model.config.modelType) {
    model.dispose();
    throw new Error(`--model ${c.model} but ${dir}/config.json says model_type "${model.config.modelType}"`);
  }
  let baseModelPath = resolve(dir);
  if (model.virtualTokens) {
    // --pretrain is a prefix/prompt adapter: it cannot be folded into the weights, but the same method trains it on.
    const vt = model.virtualTokens;
    const method = peftMethodOf(c);
    if (method !== vt.kind || (c.numVirtualTokens !== undefined && c.numVirtualTokens !== vt.numVirtualTokens)) {
      model.dispose();
      throw new Error(
        `--pretrain ${dir} is a ${vt.peftType} adapter (${vt.numVirtualTokens} virtual tokens), which cannot be merged into the weights: ` +
          `continue training it with --peft ${vt.kind}${c.numVirtualTokens !== undefined ? ` --num_virtual_tokens ${vt.numVirtualTokens}` : ''}, or pass its base model as --pretrain`,
      );
    }
    const base = readPeftAdapterConfig(dir).config.base_model_name_or_path as string;
    baseModelPath = isAbsolute(base) ? base : resolve(dir, base);
  } else if (model.lora) {
    // --pretrain is a LoRA stage's output: fold its adapter in and train from the result.
    if (c.loraRank > 0) {
      model.dispose();
      throw new Error(`--pretrain ${dir} is a LoRA adapter; a new adapter needs a full model: save that run with --merge_lora_weights, or use --lora_rank 0`);
    }
    model.lora.mergeInto(model.params, model.spec);
    model.lora.dispose();
    model.lora = null;
    baseModelPath = resolve(dir);
  }
  // An adapter directory saved without tokenizer files (as PEFT saves one) uses its base model's.
  const tokenizerDir = hasTokenizerFiles(dir) || !model.virtualTokens ? dir : baseModelPath;
  const tokenizer = await withModel(model, async () => Tokenizer.fromDir(c.tokenizer ? await resolvePretrained(c.tokenizer) : tokenizerDir));
  const method = peftMethodOf(c);
  if ((method === 'prefix' || method === 'prompt') && !model.virtualTokens) {
    const P = c.numVirtualTokens ?? DEFAULT_NUM_VIRTUAL_TOKENS;
    model.virtualTokens = method === 'prefix'
      ? PrefixTuningAdapter.create(model.config, P, c.seed)
      : PromptTuningAdapter.create(model.config, model.params.get(model.spec.embedTokens)!, P, c.promptTuningInit === 'sample_vocab' ? 'SAMPLE_VOCAB' : 'RANDOM', c.seed);
  }
  if (c.loraRank > 0) {
    const targetModules = c.loraTarget ?? DEFAULT_LORA_TARGETS[model.config.modelType]!;
    try {
      model.lora = LoraAdapter.create(model.spec, { r: c.loraRank, alpha: c.loraAlpha, dropout: c.loraDropout, targetModules }, c.seed);
    } catch (e) {
      model.dispose();
      throw e;
    }
  }
  // The base under the adapter is frozen: held packed with --frozen_dtype (the adapter stays float32).
  if (c.frozenDtype && c.frozenDtype !== 'float32' && (model.lora || model.virtualTokens)) {
    try {
      packFrozenModel(model, c.frozenDtype);
    } catch (e) {
      model.dispose();
      throw e;
    }
  }
  return { model, tokenizer, baseModelPath };
}

/** The PEFT method of a loaded model's adapter (null: none). */
function adapterMethod(model: DecoderModel): PeftMethod | null {
  return model.lora ? 'lora' : model.virtualTokens?.kind ?? null;
}

function describeMethod(m: PeftMethod | null): string {
  return m === null ? 'full weights' : m === 'lora' ? 'a LoRA adapter' : `a ${m}-tuning adapter`;
}

/** Runs `f`, disposing `model` if it throws. */
async function withModel<T>(model: DecoderModel, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** The tokenizer's ids must index the embedding, and --max_len must fit the position table. */
function checkFit(c: SftConfig, model: DecoderModel, tokenizer: Tokenizer): void {
  const mc = model.config;
  if (tokenizer.vocabSize > mc.vocabSize) {
    throw new Error(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's embedding only ${mc.vocabSize} rows: pass the model's own --tokenizer`);
  }
  // Virtual tokens take the first positions, before the sample's own.
  const virtual = model.virtualTokens?.numVirtualTokens ?? 0;
  if (c.maxLen + virtual > mc.maxPositions) {
    const room = mc.maxPositions - virtual;
    throw new Error(
      `--max_len ${c.maxLen}${virtual ? ` + ${virtual} virtual tokens` : ''} exceeds the ${mc.maxPositions} positions the model supports: ` +
        `use --max_len ${room} or less${virtual ? ' (or fewer --num_virtual_tokens)' : ''}`,
    );
  }
}

