/**
 * The PPO trainer. `PpoTrainer.create` validates the config and loads models and data (nothing is written before it
 * succeeds); `train()` runs episodes:
 *   1. collect   numCollectSteps batches of prompts → experience (experience.ts) → replay buffer
 *   2. update    numUpdateSteps passes over the buffer in minibatches: actor step (clipped policy loss, + ptx),
 *                critic step (clipped value loss), two AdamW optimizers
 *   3. log       one metrics record per episode (names below), sample generations, peak tensor memory
 *   4. KL        the adaptive controller (when --kl_target) moves β towards the target
 *   5. save      checkpoint-<episode> every --save_steps, on Ctrl-C, and the final actor/critic at --save_path
 *
 * Metrics per episode (step = episodes done): reward/mean, reward/std, objective/kl (Σ_t k1, mean over rollouts),
 * objective/kl_k3, objective/kl_coef, objective/non_score_reward, objective/rlhf_reward, policy/entropy,
 * policy/clipfrac, policy/approxkl, response/length, policy/eos_rate, loss/policy, loss/value, loss/ptx,
 * value/clipfrac, value/mean, train/actor_lr, train/critic_lr, train/actor_grad_norm, train/critic_grad_norm,
 * train/peak_tensor_mb, time/generate_s, time/score_s, time/train_s, time/new_tokens_per_s. (Other RLHF tools call
 * value/clipfrac `val/clipfrac`; this project's metric table keeps `val/`
 * unambiguous and every key under a known prefix.)
 */
import { join } from 'node:path';
import { tf } from '../engine/tf.js';
import { Rng } from '../engine/rng.js';
import { resolvePromptTemplate } from '../data/templates/index.js';
import type { Batch, BatchLoader } from '../data/batching.js';
import type { TokenizedSample } from '../data/sft_samples.js';
import { createStrategy, type Strategy } from '../strategies/strategy.js';
import { Optimization, type OptimizationConfig } from '../trainer/optimization.js';
import { checkResumeNotFinished, noteResumeChanges, readOptimizerState, type ResumeNotedField } from '../trainer/stage_checkpoint.js';
import { resumeMismatches } from '../trainer/checkpoint_io.js';
import { recoverRunDirs } from '../trainer/final_save.js';
import { NonFiniteGuard } from '../trainer/nonfinite_guard.js';
import { MetricsLogger, RunningMean } from '../trainer/metrics.js';
import { TrainingProgress } from '../trainer/progress.js';
import { onInterrupt, stepBoundary, type InterruptFlag } from '../trainer/interrupt.js';
import { longestSequence, newTokensFor, resolvePpoConfig, type PpoConfig, type PpoConfigInput } from './config.js';
import { DEFAULT_PROMPT_TEMPLATE, preparePrompts, preparePtx, promptLoader, ptxLoader, promptCounts, writePromptCounts, type PromptCounts } from './data.js';
import { makeExperience, type ExperienceItem, type ExperienceStats } from './experience.js';
import { ppoTrainStep } from './train_step.js';
import { createKlController, type KlController } from './kl_controller.js';
import { criticParams, loadPpoModels, trainableParams, type PpoModels } from './models.js';
import { ReplayBuffer, type TrainBatch } from './replay_buffer.js';
import { readPpoState, savePpoCheckpoint, type PpoTrainerState } from './checkpoint.js';
import { LoopControls, totalStepsFor } from '../trainer/loop_controls.js';
import { scheduleFor } from '../trainer/schedule_config.js';

/** Episode metrics --metric_for_best can rank by (the keys logged every episode). */
export const PPO_BEST_METRICS = [
  'reward/mean', 'objective/rlhf_reward', 'objective/kl', 'objective/non_score_reward', 'response/length', 'policy/eos_rate',
  'loss/policy', 'loss/value', 'value/mean',
] as const;

export interface PpoRunOptions {
  /** Progress and notices (default: stderr). */
  log?: (msg: string) => void;
  /** Stop flag polled between steps (default: Ctrl-C / SIGTERM handlers). */
  interrupt?: InterruptFlag;
  /** Draw a progress bar (default: when stdout is a TTY). */
  progressBar?: boolean;
  /** Called after each episode's update and log, before any checkpoint (for tools and tests). */
  onEpisode?: (episode: number, metrics: Record<string, number>) => void;
}

export interface PpoResult {
  /** One metrics record per episode of this run (as logged). */
  history: Record<string, number>[];
  /** Episodes done in total (including those before a resume). */
  episodes: number;
  interrupted: boolean;
  /** Where the last checkpoint went. */
  savedTo: string;
  peakTensorBytes: number;
}

/** Highest tf.memory().numBytes seen at the sampled moments (after forwards, inside losses). */
class PeakMemory {
  bytes = 0;
  sample = (): void => {
    this.bytes = Math.max(this.bytes, tf.memory().numBytes);
  };
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, v) => a + v, 0) / xs.length : 0);
const std = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(mean(xs.map((x) => (x - m) ** 2)));
};
const seconds = () => performance.now() / 1000;

/** Settings that fix the prompt order and the adapters' shapes: --resume must use the same values. */
const RESUME_FIXED = ['experienceBatchSize', 'maxDatasetsSize', 'seed', 'loraRank'] as const;
/** Settings that may change on --resume: noted, and the run goes on with the new values. */
const RESUME_NOTED: readonly ResumeNotedField[] = [
  { field: 'lr' }, { field: 'criticLr' }, { field: 'weightDecay' }, { field: 'gradClip' }, { field: 'clipEps' }, { field: 'valueClip' },
  { field: 'gamma' }, { field: 'lam' }, { field: 'ptxCoef' }, { field: 'temperature' }, { field: 'numEpisodes' },
  { field: 'klCoef', effect: 'the KL coefficient continues from the checkpoint\'s value' },
  { field: 'pretrain', path: true, effect: 'the actor comes from the checkpoint; the initial (reference) model is the new --pretrain' },
  { field: 'rmPath', path: true, effect: 'the critic comes from the checkpoint; rewards come from the new --rm_path' },
  { field: 'refPretrain', path: true, effect: 'the reference model is the new --ref_pretrain' },
];

export class PpoTrainer {
  private readonly buffer: ReplayBuffer;
  private readonly actorOpt: Optimization;
  private readonly criticOpt: Optimization;
  private readonly kl: KlController;
  private readonly memory = new PeakMemory();
  /** Episodes done. */
  private episode = 0;
  private readonly logHistory: Record<string, number | null>[] = [];
  private readonly eosTokenId: number | null;
  private readonly padTokenId: number;
  /** Episodes of the run: --max_steps when given, else --num_episodes. */
  readonly totalEpisodes: number;
  /** --max_steps, --logging_steps, --save_steps, --save_total_limit, --save_best, counted in episodes. */
  readonly controls: LoopControls;
  /** How many prompts the run has and how many were shortened; written beside the metrics when training starts. */
  private promptCounts: PromptCounts | null = null;

  private constructor(
    readonly config: PpoConfig,
    private readonly models: PpoModels,
    private readonly strategy: Strategy,
    private readonly promptBatches: BatchLoader<number[], Batch>,
    private readonly ptxBatches: BatchLoader<TokenizedSample, Batch> | null,
    readonly templateName: string,
    private readonly log: (msg: string) => void,
    private readonly opts: PpoRunOptions,
  ) {
    const c = config;
    const tok = models.tokenizer;
    this.eosTokenId = tok.eosTokenId ?? models.actor.config.eosTokenId;
    this.padTokenId = tok.padTokenId ?? models.actor.config.padTokenId ?? this.eosTokenId ?? 0;
    this.buffer = new ReplayBuffer(this.padTokenId);
    this.totalEpisodes = totalStepsFor(c.maxSteps, c.numEpisodes);
    // The schedule counts optimizer steps: one per minibatch, numUpdateSteps passes over a buffer of at most
    // numCollectSteps × experienceBatchSize rollouts per episode (an upper bound when a prompt epoch ends short).
    const stepsPerEpisode = c.numUpdateSteps * Math.ceil((c.numCollectSteps * c.experienceBatchSize) / c.trainBatchSize);
    const optim = (lr: number): OptimizationConfig => ({
      lr, weightDecay: c.weightDecay, gradClip: c.gradClip, accumulationSteps: 1,
      // the critic follows the same schedule, its --min_lr floor scaled by critic_lr / lr
      ...scheduleFor({ ...c, lr, minLr: c.minLr === undefined ? undefined : (c.minLr * lr) / (c.lr || 1) }, stepsPerEpisode * this.totalEpisodes),
    });
    this.actorOpt = new Optimization(trainableParams(models.actor), optim(c.lr), strategy);
    this.criticOpt = new Optimization(criticParams(models.critic), optim(c.criticLr), strategy);
    this.kl = createKlController(c.klCoef, c.klTarget, c.klHorizon);
    this.controls = new LoopControls(c, {
      savePath: c.savePath, totalSteps: this.totalEpisodes, resumeDir: c.resume, stage: 'train_prompts', log, evalMetrics: PPO_BEST_METRICS,
    });
  }

  /** Validates, loads the models and data, and restores a checkpoint with --resume. Writes nothing (only repairs what a crash left in save_path or --resume). */
  static async create(input: PpoConfigInput | PpoConfig, opts: PpoRunOptions = {}): Promise<PpoTrainer> {
    const c = resolvePpoConfig(input);
    const strategy = createStrategy(c.strategy);
    const log = strategy.isMain() ? (opts.log ?? ((m: string) => process.stderr.write(m + '\n'))) : () => {};
    let state: PpoTrainerState | null = null;
    await recoverRunDirs(strategy, [c.savePath, c.resume], log);
    if (c.resume) {
      state = await readPpoState(c.resume);
      const changed = resumeMismatches(state, c as unknown as Record<string, unknown>, RESUME_FIXED, strategy.worldSize).filter((m) => m.was !== 'null');
      if (changed.length) {
        throw new Error(`--resume ${c.resume}: these options differ from the run that wrote it, so its prompt position or adapters do not apply: ` +
          changed.map((m) => `${m.field} was ${m.was}, now ${m.now}`).join('; '));
      }
      noteResumeChanges(c.resume, state, c as unknown as Record<string, unknown>, RESUME_NOTED, log);
    }
    const models = await loadPpoModels(c, c.resume);
    try {
      // 1. lengths must fit every model's positions
      const longest = longestSequence(c);
      for (const [what, m] of [['actor', models.actor], ['critic', models.critic.backbone], ['reward model', models.reward.backbone]] as const) {
        if (longest > m.config.maxPositions) {
          throw new Error(`prompt + answer can reach ${longest} tokens but the ${what} has ${m.config.maxPositions} positions: lower --max_seq_len (or --max_input_len / --max_new_tokens)`);
        }
      }
      // 2. data
      // --prompt_template, else the SFT directory's recorded template, else the model's chat template, else alpaca
      const { template, note } = resolvePromptTemplate(c.promptTemplate, models.tokenizer, DEFAULT_PROMPT_TEMPLATE, models.dirs.pretrain);
      const templateName = template.name;
      log(note);
      const prompts = await preparePrompts(c.promptDataset, models.tokenizer, {
        template, maxInputLen: c.maxInputLen, column: c.promptColumn, maxRecords: c.maxDatasetsSize || undefined, skipBadRecords: c.skipBadRecords,
      });
      if (prompts.skipped) log(`prompts: skipped ${prompts.skipped} bad record(s), e.g. ${prompts.skippedExamples[0]}`);
      if (prompts.truncated) {
        const whole = prompts.truncatedTemplate ? `; ${prompts.truncatedTemplate} of them exceed it even without the user's text and lost their beginning` : '';
        log(`prompts: ${prompts.truncated} of ${prompts.prompts.length} longer than --max_input_len ${c.maxInputLen}: the user's text was shortened${whole}`);
      }
      const pad = models.tokenizer.padTokenId ?? models.actor.config.padTokenId ?? models.tokenizer.eosTokenId ?? 0;
      const make = strategy.createLoader.bind(strategy);
      const promptBatches = promptLoader(prompts.prompts, c.experienceBatchSize, pad, c.seed, make);
      let ptxBatches: BatchLoader<TokenizedSample, Batch> | null = null;
      if (c.pretrainDataset.length && c.ptxCoef > 0) {
        const samples = await preparePtx(c.pretrainDataset, models.tokenizer, {
          template, maxLen: Math.min(c.maxSeqLen, models.actor.config.maxPositions), maxRecords: c.maxDatasetsSize || undefined, skipBadRecords: c.skipBadRecords,
        });
        ptxBatches = ptxLoader(samples, c.ptxBatchSize, pad, c.seed + 2, make);
      }
      log(`ppo: ${prompts.prompts.length} prompts (template ${templateName})${ptxBatches ? `, ${ptxBatches.batchesPerEpoch * c.ptxBatchSize} ptx samples` : ''}; ` +
        `actor ${models.actor.lora ? `LoRA r=${c.loraRank} on a base shared with the initial model` : 'full weights'}, ` +
        `critic ${models.critic.backbone === models.reward.backbone ? 'sharing the reward model\'s base' : 'separate from the reward model'}`);
      const trainer = new PpoTrainer(c, models, strategy, promptBatches, ptxBatches, templateName, log, opts);
      trainer.promptCounts = promptCounts(prompts, c.maxInputLen);
      if (state) trainer.restore(state, c.resume!);
      return trainer;
    } catch (e) {
      models.dispose();
      throw e;
    }
  }

  private restore(s: PpoTrainerState, dir: string): void {
    this.episode = s.global_step;
    this.promptBatches.restore({ epoch: s.epoch, index: s.step_in_epoch });
    if (s.ppo.ptx_position && this.ptxBatches) this.ptxBatches.restore(s.ppo.ptx_position);
    this.kl.restore({ value: s.ppo.kl_coef });
    this.controls.restoreBest(s);
    this.logHistory.push(...s.log_history);
    const actor = readOptimizerState(dir, 'actor');
    const critic = readOptimizerState(dir, 'critic');
    if (actor && critic) {
      this.actorOpt.loadStateDict(actor.state, actor.globalStep);
      this.criticOpt.loadStateDict(critic.state, critic.globalStep);
    } else {
      this.log(`note: ${dir} has no optimizer state (saved without --need_optim_ckpt): the optimizers start fresh`);
    }
    this.log(`resumed from ${dir} after episode ${this.episode} (kl_coef ${this.kl.value.toPrecision(4)})`);
  }

  get episodesDone(): number {
    return this.episode;
  }

  get klCoef(): number {
    return this.kl.value;
  }

  get modelSet(): PpoModels {
    return this.models;
  }

  get logDir(): string {
    return this.config.logDir ?? join(this.config.savePath, 'logs');
  }

  async train(): Promise<PpoResult> {
    const c = this.config;
    // A checkpoint that already finished the run is reported, not saved again as if it had trained.
    if (c.resume) checkResumeNotFinished(c.resume, { step: this.episode, total: c.numEpisodes, unit: 'episode' });
    const main = this.strategy.isMain();
    const logger = main ? new MetricsLogger(this.logDir) : null;
    if (main && this.promptCounts) writePromptCounts(this.logDir, this.promptCounts);
    const progress = main ? new TrainingProgress({ total: this.totalEpisodes, startStep: this.episode, label: 'ppo', bar: this.opts.progressBar }) : null;
    const interrupt = this.opts.interrupt ?? onInterrupt();
    const history: Record<string, number>[] = [];
    let interrupted = false;
    let savedTo = c.savePath;
    const guard = new NonFiniteGuard(c, { savePath: c.savePath, unit: 'episode', log: this.log });
    if (c.resume) guard.checkpointSaved(this.episode, c.resume);
    const weights = [...this.actorOpt.variables, ...this.criticOpt.variables];
    let resumableAt = -1; // the episode of a resumable checkpoint already written (an interrupt need not write it again)
    try {
      while (this.episode < this.totalEpisodes) {
        const t0 = seconds();
        const before = this.promptBatches.position;
        // 1. collect
        const collected = await this.collect(interrupt);
        if (!collected) {
          // Stopped before any weight moved: the episode restarts from its beginning on resume.
          this.buffer.clear();
          this.promptBatches.restore(before);
          interrupted = true;
          break;
        }
        // 2. update
        const t1 = seconds();
        const update = this.update();
        this.buffer.clear();
        const t2 = seconds();
        // 3. log: metrics averaged over ranks, with the β this episode's rewards used
        const metrics = this.strategy.reduceMetrics(this.episodeMetrics(collected.stats, update, this.kl.value, { collect: t1 - t0, train: t2 - t1 }));
        this.episode += 1;
        history.push(metrics);
        const logged = this.controls.logDue(this.episode);
        if (logged) {
          this.logHistory.push({ step: this.episode, ...metrics });
          logger?.log(this.episode, metrics);
        }
        if (logger && c.sampleEvery > 0 && this.episode % c.sampleEvery === 0) this.logSamples(logger, collected.items);
        progress?.update(this.episode, { loss: metrics['loss/policy'], lr: metrics['train/actor_lr'], tokens: collected.items.reduce((a, it) => a + it.answer.length, 0) });
        if (logged) this.log(`episode ${this.episode}/${this.totalEpisodes}: reward ${metrics['reward/mean']!.toFixed(4)}, kl ${metrics['objective/kl']!.toFixed(3)} ` +
          `(β ${metrics['objective/kl_coef']!.toPrecision(3)}), answer ${metrics['response/length']!.toFixed(1)} tokens, ` +
          `value loss ${metrics['loss/value']!.toFixed(4)}, ${(t2 - t0).toFixed(1)} s`);
        this.opts.onEpisode?.(this.episode, metrics);
        // 4. KL controller, fed the KL measured during collection
        this.kl.update(metrics['objective/kl']!, collected.items.length * this.strategy.worldSize);
        // 5. numbers (stops, throwing, before anything of this episode is saved), Ctrl-C, checkpoints
        const checked = Object.fromEntries(Object.entries(metrics).filter(([k]) => !k.startsWith('time/')));
        guard.check(this.episode, checked, weights, 'loss/value');
        if (this.episode < this.totalEpisodes && (await stepBoundary(interrupt, this.strategy))) {
          interrupted = true;
          break;
        }
        // --save_best: the best episode by --metric_for_best (PPO has no held-out evaluation)
        await this.controls.recordEval(this.episode, metrics, (dir) => this.save(dir, { final: false, optimizer: c.needOptimCkpt }));
        if (this.controls.saveDue(this.episode)) {
          const dir = this.controls.checkpointDir(this.episode);
          await this.save(dir, { final: false, optimizer: c.needOptimCkpt });
          guard.checkpointSaved(this.episode, dir);
          if (c.needOptimCkpt) resumableAt = this.episode;
          if (main) for (const old of this.controls.afterCheckpoint()) this.log(`removed ${old} (--save_total_limit ${c.saveTotalLimit})`);
        }
      }
      if (interrupted) {
        savedTo = join(c.savePath, `checkpoint-${this.episode}`);
        if (resumableAt !== this.episode) await this.save(savedTo, { final: false, optimizer: true });

        this.log(`interrupted: saved ${savedTo}; continue with the same command plus --resume ${savedTo}`);
      } else {
        await this.save(c.savePath, { final: true, optimizer: c.needOptimCkpt });
      }
    } finally {
      progress?.stop();
      logger?.close();
      if (!this.opts.interrupt) interrupt.dispose();
    }
    if (!interrupted) this.log(`ppo: done after ${this.episode} episodes; actor in ${c.savePath}, critic in ${join(c.savePath, 'critic')}; peak tensor memory ${(this.memory.bytes / 2 ** 20).toFixed(1)} MiB`);
    return { history, episodes: this.episode, interrupted, savedTo, peakTensorBytes: this.memory.bytes };
  }

  /**
   * The random stream for one use (0 sampling, 1 minibatch order) in the current episode on this rank: a pure function
   * of (seed, rank, episode), so a resumed run draws what an uninterrupted one would, under any strategy.
   */
  private episodeRng(use: number): Rng {
    let h = Math.imul(this.config.seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
    for (const v of [this.strategy.rank, this.episode, use]) h = Math.imul(h ^ (v + 0x165667b1), 0xc2b2ae35) >>> 0;
    return new Rng(h ^ (h >>> 16));
  }

  /** Step 1: numCollectSteps rollout batches into the buffer; null when interrupted. */
  private async collect(interrupt: InterruptFlag): Promise<{ items: ExperienceItem[]; stats: ExperienceStats[] } | null> {
    const c = this.config;
    const rng = this.episodeRng(0);
    const items: ExperienceItem[] = [];
    const stats: ExperienceStats[] = [];
    for (let i = 0; i < c.numCollectSteps; i++) {
      if (await stepBoundary(interrupt, this.strategy)) return null;
      const { batch } = this.promptBatches.next();
      const P = batch.inputIds[0]!.length;
      const exp = makeExperience(this.models, batch.inputIds, batch.attentionMask, {
        maxNewTokens: newTokensFor(c, P), temperature: c.temperature, topK: c.topK, topP: c.topP,
        eosTokenId: this.eosTokenId, padTokenId: this.padTokenId, rng,
        klCoef: this.kl.value, klEstimator: c.klEstimator, rewardClip: c.rewardClip, gamma: c.gamma, lam: c.lam,
        advantage: c.advantage, whitenAdvantages: c.whitenAdvantages, onMemory: this.memory.sample,
      });
      this.memory.sample();
      this.buffer.add(exp.items);
      items.push(...exp.items);
      stats.push(exp.stats);
    }
    return { items, stats };
  }

  /** Step 2: numUpdateSteps passes over the buffer; the means of the minibatch metrics. */
  private update(): Record<string, number> {
    const running = new RunningMean();
    const rng = this.episodeRng(1);
    for (let pass = 0; pass < this.config.numUpdateSteps; pass++) {
      for (const batch of this.buffer.minibatches(this.config.trainBatchSize, rng)) {
        const ptx = this.ptxBatches ? this.ptxBatches.next().batch : null;
        running.add(this.trainStep(batch, ptx));
      }
    }
    return running.log();
  }

  /** One minibatch: see ppoTrainStep. */
  private trainStep(b: TrainBatch, ptx: Batch | null): Record<string, number> {
    return ppoTrainStep(this.models, { actor: this.actorOpt, critic: this.criticOpt }, b, ptx, this.config, this.memory.sample);
  }

  private episodeMetrics(stats: ExperienceStats[], update: Record<string, number>, klUsed: number, time: { collect: number; train: number }): Record<string, number> {
    const all = <K extends keyof ExperienceStats>(k: K) => stats.flatMap((s) => s[k] as number[]);
    const scores = all('scores');
    const nonScore = all('nonScoreReward');
    const generate = stats.reduce((a, s) => a + s.generateSeconds, 0);
    const newTokens = all('responseLengths').reduce((a, v) => a + v, 0);
    return {
      'reward/mean': mean(scores),
      'reward/std': std(scores),
      'objective/kl': mean(all('klK1')),
      'objective/kl_k3': mean(all('klK3')),
      'objective/kl_coef': klUsed,
      'objective/non_score_reward': mean(nonScore),
      'objective/rlhf_reward': mean(scores.map((s, i) => s + nonScore[i]!)),
      'response/length': mean(all('responseLengths')),
      'policy/eos_rate': stats.reduce((a, s) => a + s.endedWithEos, 0) / Math.max(1, scores.length),
      'value/mean': mean(stats.map((s) => s.meanValue)),
      ...update,
      'train/peak_tensor_mb': this.memory.bytes / 2 ** 20,
      'time/generate_s': generate,
      'time/score_s': stats.reduce((a, s) => a + s.scoreSeconds, 0),
      'time/collect_s': time.collect,
      'time/train_s': time.train,
      'time/new_tokens_per_s': generate > 0 ? newTokens / generate : 0,
    };
  }

  private logSamples(logger: MetricsLogger, items: ExperienceItem[]): void {
    const tok = this.models.tokenizer;
    for (const it of items.slice(0, 2)) {
      const text = `${tok.decode(it.prompt, { skipSpecialTokens: true })}${tok.decode(it.answer, { skipSpecialTokens: true })}\n[reward ${it.score.toFixed(4)}, ${it.answer.length} tokens]`;
      logger.logText('ppo/sample', text, this.episode);
    }
  }

  private trainerState(): PpoTrainerState {
    const pos = this.promptBatches.position;
    return {
      global_step: this.episode, epoch: pos.epoch, step_in_epoch: pos.index, ...this.controls.bestState(),
      rng_state: { seed: this.config.seed },
      args: JSON.parse(JSON.stringify({ ...this.config, promptTemplate: this.templateName })) as Record<string, unknown>,
      log_history: this.logHistory,
      ppo: { kl_coef: this.kl.value, ptx_position: this.ptxBatches?.position ?? null },
    };
  }

  /** Final saves merge LoRA when asked (or when the base is itself an adapter); resumable checkpoints never do. */
  async save(dir: string, o: { final: boolean; optimizer: boolean }): Promise<void> {
    const c = this.config;
    const m = this.models;
    await this.strategy.saveOnMain(o.optimizer ? [this.actorOpt, this.criticOpt] : [], () => savePpoCheckpoint(dir, o.final, {
      actor: m.actor, critic: m.critic, tokenizer: m.tokenizer,
      mergeActor: o.final && (c.mergeLoraWeights || m.pretrainIsAdapter),
      mergeCritic: o.final && (c.mergeLoraWeights || m.criticInitIsAdapter),
      actorBase: m.dirs.pretrain, criticBase: m.dirs.criticInit,
      actorExtra: { rlhf: { kind: 'ppo_actor', prompt_template: this.templateName } },
      criticExtra: { rlhf: { kind: 'critic', reward_reduction: m.rewardReduction } },
      optimizers: o.optimizer ? { actor: this.actorOpt, critic: this.criticOpt } : undefined,
      state: this.trainerState(),
    }));
  }

  dispose(): void {
    this.actorOpt.dispose();
    this.criticOpt.dispose();
    this.models.dispose();
  }
}

/** Runs a whole PPO stage from a config (the CLI and the pipeline scripts call this). */
export async function runPpo(config: PpoConfigInput | PpoConfig, opts: PpoRunOptions = {}): Promise<PpoResult> {
  const trainer = await PpoTrainer.create(config, opts);
  try {
    return await trainer.train();
  } finally {
    trainer.dispose();
  }
}

