import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { interruptExitCode } from '../trainer/interrupt.js';

/**
 * Runs a command's main function: errors print as one line (set DEBUG=1 for the stack) and exit 1; a run stopped by
 * SIGINT or SIGTERM exits 130 or 143 once its checkpoint is saved (as a job runner expects of a terminated job).
 * Kept free of heavy imports so light commands (report) start fast.
 */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(interruptExitCode() ?? 0),
    async (e: unknown) => {
      const msg = e instanceof Error ? e.message : String(e);
      console.error(`error: ${msg}`);
      const memory = await import('../engine/memory.js').catch(() => null);
      if (memory?.looksLikeOutOfMemory(e)) {
        console.error(`note: ${memory.outOfMemoryNote()}: lower --batch_size (keeping the effective batch with --accumulation_steps), --max_len or --max_seq_len, or train LoRA adapters (--lora_rank 8)`);
      }
      if (process.env.DEBUG && e instanceof Error) console.error(e.stack);
      process.exit(1);
    },
  );
}

/** True when this module is the program being run (not imported by a test or another module). */
export function invokedDirectly(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === fileURLToPath(moduleUrl);
  } catch {
    return false;
  }
}
