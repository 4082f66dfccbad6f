/**
 * Graceful stop on Ctrl-C / SIGTERM. A training step runs synchronously, so a signal's handler only runs when the
 * loop gives the event loop a turn: every trainer does so at each step boundary with `stepBoundary`.
 *
 *   const interrupt = onInterrupt();
 *   for (...) {
 *     step();
 *     if (await stepBoundary(interrupt, strategy)) { await saveCheckpoint(); break; }
 *   }
 *   interrupt.dispose();
 *
 * 1st signal: stop at the next step boundary and save a resumable checkpoint.
 * 2nd signal: a reminder only: the checkpoint is still written before the process exits (so a double Ctrl-C never
 *             leaves a run without its checkpoint).
 * 3rd signal: exits at once; the checkpoints already on disk stay whole (every write is atomic).
 * A command that was interrupted exits 130 (SIGINT) or 143 (SIGTERM), after saving: `interruptExitCode()`.
 */

/** The handle `onInterrupt` returns. */
export interface InterruptFlag {
  /** True once SIGINT or SIGTERM has been received. */
  readonly requested: boolean;
  /** The first signal received, or null. */
  readonly signal: NodeJS.Signals | null;
  /** Removes the handlers (the default behaviour of both signals comes back). */
  dispose(): void;
}

/** Options of `onInterrupt`, replaceable for tests. */
export interface InterruptOptions {
  /** Called to exit on the third signal (default: process.exit with 130 for SIGINT, 143 for SIGTERM). */
  exit?: (code: number) => void;
  /** Where the notices go (default: stderr). */
  log?: (message: string) => void;
}

/** What `strategy.anyRank` offers; every rank must call `stepBoundary` at the same points. */
export interface RankVote {
  anyRank(flag: boolean): boolean;
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
const EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** The first stop signal this process received (kept after dispose, for the exit code). */
let firstSignal: NodeJS.Signals | null = null;

/** 130 after SIGINT, 143 after SIGTERM (128 + signal number, as a shell reports it); null when none came. */
export function interruptExitCode(): number | null {
  return firstSignal === null ? null : (EXIT_CODES[firstSignal] ?? 1);
}

/** Forgets the signal `interruptExitCode` reports (for tests that send signals to their own process). */
export function resetInterruptExitCode(): void {
  firstSignal = null;
}

/** Installs SIGINT/SIGTERM handlers that set a flag; see the module comment. */
export function onInterrupt(options: InterruptOptions = {}): InterruptFlag {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const log = options.log ?? ((message: string) => process.stderr.write(message + '\n'));
  let signal: NodeJS.Signals | null = null;
  let received = 0;

  const handler = (s: NodeJS.Signals) => {
    received += 1;
    if (received === 1) {
      signal = s;
      firstSignal ??= s;
      log(`\n${s} received: finishing this step and saving a checkpoint (press Ctrl-C twice more to exit without it).`);
    } else if (received === 2) {
      log(`\n${s} again: still saving the checkpoint before exiting (once more to exit now without it; earlier checkpoints stay intact).`);
    } else {
      log(`\n${s} again: exiting now without saving.`);
      exit(EXIT_CODES[s] ?? 1);
    }
  };
  for (const s of SIGNALS) process.on(s, handler);

  return {
    get requested() {
      return signal !== null;
    },
    get signal() {
      return signal;
    },
    dispose() {
      for (const s of SIGNALS) process.off(s, handler);
    },
  };
}

/**
 * The step boundary every trainer calls after each optimizer step (and between long phases of a step): gives the
 * event loop a turn, so that a pending SIGINT/SIGTERM handler runs, then asks every rank whether any of them was
 * interrupted (a collective under ddp/zero2, so all ranks stop at the same step). True: save a resumable checkpoint
 * and stop.
 */
export async function stepBoundary(interrupt: Pick<InterruptFlag, 'requested'>, ranks: RankVote): Promise<boolean> {
  await new Promise<void>((done) => setImmediate(done));
  return ranks.anyRank(interrupt.requested);
}
