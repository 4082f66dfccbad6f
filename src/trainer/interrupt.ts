/**
 * Graceful stop on Ctrl-C / SIGTERM: the first signal only sets a flag that the training loop polls between steps
 * (so it can save a resumable checkpoint and exit cleanly); a second signal exits at once.
 *
 *   const interrupt = onInterrupt();
 *   for (...) { step(); if (interrupt.requested) { await saveCheckpoint(); break; } }
 *   interrupt.dispose();
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
  /** Called on the second signal (default: process.exit with 128 + signal number, 130 for SIGINT). */
  exit?: (code: number) => void;
  /** Where the notice goes (default: stderr). */
  log?: (message: string) => void;
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
const EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** Installs SIGINT/SIGTERM handlers that set a flag; see the module comment. */
export function onInterrupt(options: InterruptOptions = {}): InterruptFlag {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const log = options.log ?? ((message: string) => process.stderr.write(message + '\n'));
  let signal: NodeJS.Signals | null = null;

  const handler = (received: NodeJS.Signals) => {
    if (signal !== null) {
      log(`\n${received} again: exiting now without saving.`);
      exit(EXIT_CODES[received] ?? 1);
      return;
    }
    signal = received;
    log(`\n${received} received: finishing this step and saving a checkpoint (press Ctrl-C again to exit now).`);
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
