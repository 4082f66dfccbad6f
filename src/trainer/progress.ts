/**
 * Training progress on the terminal: a `cli-progress` bar (step/total, loss, lr, tokens/s, ETA) when stdout is a
 * TTY, otherwise (pipes, log files, CI=true) a plain line every `intervalSeconds`, so logs stay readable.
 */
import cliProgress from 'cli-progress';

/** Options of `TrainingProgress`. */
export interface ProgressOptions {
  /** Optimizer steps in the run. */
  total: number;
  /** Step the run starts from (non-zero when resuming), so tokens/s and ETA count only this run's work. */
  startStep?: number;
  /** Shown before the numbers, e.g. "sft" or "ppo". */
  label?: string;
  /** Force the bar on or off; default: on when `stream` is a TTY and CI is not "true". */
  bar?: boolean;
  /** Seconds between plain lines when the bar is off (the last step always prints). */
  intervalSeconds?: number;
  /** Where output goes (default process.stdout). */
  stream?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Clock in seconds, replaceable for tests. */
  now?: () => number;
}

/** What a training step reports. */
export interface ProgressUpdate {
  /** Loss of the step just finished. */
  loss?: number;
  /** Learning rate used for that step. */
  lr?: number;
  /** Tokens processed by that step (summed to give tokens/s). */
  tokens?: number;
}

/** Whether a bar can be drawn on `stream`: a TTY, and not under CI. */
export function shouldDrawBar(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && env.CI !== 'true' && env.CI !== '1';
}

/** "1h02m03s" / "2m03s" / "3s"; "?" while unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (h > 0) return `${h}h${pad(m)}m${pad(sec)}s`;
  if (m > 0) return `${m}m${pad(sec)}s`;
  return `${sec}s`;
}

export class TrainingProgress {
  private readonly total: number;
  private readonly startStep: number;
  private readonly label: string;
  private readonly intervalSeconds: number;
  private readonly stream: NodeJS.WritableStream;
  private readonly now: () => number;
  private readonly bar: cliProgress.SingleBar | undefined;
  private readonly startTime: number;
  private lastLineTime = -Infinity;
  private tokens = 0;
  /** Last reported values, shown until a step reports new ones. */
  private loss: number | undefined;
  private lr: number | undefined;
  private stopped = false;

  constructor(options: ProgressOptions) {
    if (!Number.isInteger(options.total) || options.total < 0) {
      throw new Error(`TrainingProgress: total must be an integer >= 0, got ${options.total}`);
    }
    this.total = options.total;
    this.startStep = options.startStep ?? 0;
    this.label = options.label ?? 'train';
    this.intervalSeconds = options.intervalSeconds ?? 30;
    this.stream = options.stream ?? process.stdout;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.startTime = this.now();
    const drawBar = options.bar ?? shouldDrawBar(this.stream as { isTTY?: boolean });
    if (drawBar) {
      this.bar = new cliProgress.SingleBar({
        format: `${this.label} {bar} {value}/{total} | loss {loss} | lr {lr} | {tps} tok/s | ETA {etaText}`,
        stream: this.stream,
        hideCursor: true,
        gracefulExit: false, // interrupt.ts owns SIGINT; the bar is stopped by stop()
      });
      this.bar.start(this.total, this.startStep, this.payload(this.startStep));
    }
  }

  /** Reports that `step` optimizer steps are done (1-based count of steps taken). */
  update(step: number, update: ProgressUpdate = {}): void {
    if (this.stopped) return;
    this.tokens += update.tokens ?? 0;
    this.loss = update.loss ?? this.loss;
    this.lr = update.lr ?? this.lr;
    const payload = this.payload(step);
    if (this.bar) {
      this.bar.update(step, payload);
      return;
    }
    const t = this.now();
    if (t - this.lastLineTime < this.intervalSeconds && step < this.total) return;
    this.lastLineTime = t;
    this.stream.write(this.line(step, payload) + '\n');
  }

  /** Removes the bar (leaving its last state on screen); later updates are ignored. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bar?.stop();
  }

  /** The plain line printed when the bar is off. */
  private line(step: number, p: Record<string, string>): string {
    return `${this.label} step ${step}/${this.total} | loss ${p.loss} | lr ${p.lr} | ${p.tps} tok/s | ETA ${p.etaText}`;
  }

  private payload(step: number): Record<string, string> {
    const elapsed = this.now() - this.startTime;
    const done = step - this.startStep;
    const eta = done > 0 ? (elapsed / done) * (this.total - step) : NaN;
    return {
      loss: this.loss === undefined ? '-' : this.loss.toFixed(4),
      lr: this.lr === undefined ? '-' : this.lr.toExponential(2),
      tps: elapsed > 0 && this.tokens > 0 ? Math.round(this.tokens / elapsed).toString() : '-',
      etaText: formatDuration(eta),
    };
  }
}
