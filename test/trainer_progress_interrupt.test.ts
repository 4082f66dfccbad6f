import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { interruptExitCode, onInterrupt, resetInterruptExitCode, stepBoundary } from '../src/trainer/interrupt.js';
import { TrainingProgress, formatDuration, shouldDrawBar } from '../src/trainer/progress.js';

function capture(isTTY: boolean) {
  const stream = Object.assign(new PassThrough(), { isTTY, columns: 200 });
  let out = '';
  stream.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return { stream, output: () => out };
}

describe('TrainingProgress', () => {
  it('draws a bar only on a TTY outside CI', () => {
    expect(shouldDrawBar({ isTTY: true }, {})).toBe(true);
    expect(shouldDrawBar({ isTTY: true }, { CI: 'true' })).toBe(false);
    expect(shouldDrawBar({ isTTY: false }, {})).toBe(false);
    expect(shouldDrawBar({}, {})).toBe(false);
  });

  it('prints plain lines at most every intervalSeconds, with tokens/s and ETA, and always the last step', async () => {
    const { stream, output } = capture(false);
    let clock = 1000;
    const progress = new TrainingProgress({ total: 10, label: 'sft', intervalSeconds: 5, stream, now: () => clock });
    clock += 2;
    progress.update(1, { loss: 2.5, lr: 1e-4, tokens: 1000 }); // printed (first line)
    clock += 2;
    progress.update(2, { loss: 2.0, tokens: 1000 }); // 2 s later: skipped
    clock += 4;
    progress.update(4, { tokens: 2000 }); // 6 s after the first line: printed, loss/lr carried over
    clock += 12;
    progress.update(10, { loss: 1.0, tokens: 6000 }); // last step: printed
    progress.stop();
    await new Promise((r) => setImmediate(r));
    expect(output().trim().split('\n')).toEqual([
      // 1000 tokens in 2 s; 2 s per step, 9 steps left
      'sft step 1/10 | loss 2.5000 | lr 1.00e-4 | 500 tok/s | ETA 18s',
      // 4000 tokens in 8 s; 2 s per step, 6 steps left
      'sft step 4/10 | loss 2.0000 | lr 1.00e-4 | 500 tok/s | ETA 12s',
      'sft step 10/10 | loss 1.0000 | lr 1.00e-4 | 500 tok/s | ETA 0s',
    ]);
  });

  it('counts ETA from the resume step', async () => {
    const { stream, output } = capture(false);
    let clock = 0;
    const progress = new TrainingProgress({ total: 100, startStep: 50, stream, now: () => clock });
    clock = 10;
    progress.update(60); // 10 steps in 10 s, 40 left
    progress.stop();
    await new Promise((r) => setImmediate(r));
    expect(output()).toContain('step 60/100 | loss - | lr - | - tok/s | ETA 40s');
  });

  it('renders a cli-progress bar with the step, loss and lr on a TTY', async () => {
    const { stream, output } = capture(true);
    const progress = new TrainingProgress({ total: 8, label: 'rm', stream, bar: true });
    progress.update(3, { loss: 0.5, lr: 2e-5, tokens: 10 });
    progress.stop();
    await new Promise((r) => setImmediate(r));
    expect(output()).toMatch(/rm .*3\/8 \| loss 0\.5000 \| lr 2\.00e-5/);
  });

  it('formats durations', () => {
    expect(formatDuration(3)).toBe('3s');
    expect(formatDuration(123)).toBe('2m03s');
    expect(formatDuration(3723)).toBe('1h02m03s');
    expect(formatDuration(NaN)).toBe('?');
  });
});

describe('onInterrupt', () => {
  it('sets a flag on the first signal, exits on the second, and removes its handlers on dispose', () => {
    const exits: number[] = [];
    const messages: string[] = [];
    const before = process.listenerCount('SIGINT');
    const beforeTerm = process.listenerCount('SIGTERM');
    const interrupt = onInterrupt({ exit: (code) => exits.push(code), log: (m) => messages.push(m) });
    expect(process.listenerCount('SIGINT')).toBe(before + 1);
    expect(interrupt.requested).toBe(false);
    process.emit('SIGTERM', 'SIGTERM');
    expect(interrupt.requested).toBe(true);
    expect(interrupt.signal).toBe('SIGTERM');
    expect(exits).toEqual([]);
    expect(messages[0]).toMatch(/saving a checkpoint/);
    // A second signal only reminds that the checkpoint is still being saved; a third exits at once.
    process.emit('SIGINT', 'SIGINT');
    expect(exits).toEqual([]);
    expect(messages[1]).toMatch(/still saving the checkpoint/);
    process.emit('SIGINT', 'SIGINT');
    expect(exits).toEqual([130]);
    expect(interruptExitCode()).toBe(143); // the first signal decides the exit code
    interrupt.dispose();
    resetInterruptExitCode();
    expect(interruptExitCode()).toBeNull();
    expect(process.listenerCount('SIGINT')).toBe(before);
    expect(process.listenerCount('SIGTERM')).toBe(beforeTerm);
  });

  it('stepBoundary lets a pending signal handler run before it answers, and asks every rank', async () => {
    const interrupt = onInterrupt({ exit: () => {}, log: () => {} });
    try {
      const votes: boolean[] = [];
      const ranks = { anyRank: (flag: boolean) => (votes.push(flag), flag) };
      expect(await stepBoundary(interrupt, ranks)).toBe(false);
      // A handler queued from the event loop (as a real signal's is) runs during the boundary's turn.
      setImmediate(() => process.emit('SIGINT', 'SIGINT'));
      expect(await stepBoundary(interrupt, ranks)).toBe(true);
      expect(votes).toEqual([false, true]);
    } finally {
      interrupt.dispose();
      resetInterruptExitCode();
    }
  });
});
