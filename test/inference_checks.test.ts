// inference refuses, before generating, what would otherwise fail as a raw tensor error: too many positions, or a
// tokenizer whose ids the model cannot embed. Errors name the flag to change.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { checkPromptFits, checkTokenizerFitsModel } from '../src/cli/inference_checks.js';
import { readConfig } from '../src/models/pretrained.js';
import { fixtureDir } from './helpers/fixtures.js';

const ROOT = join(import.meta.dirname, '..');
const gpt2 = readConfig(fixtureDir('gpt2')); // 64 positions, 600 tokens
const bloom = readConfig(fixtureDir('bloom')); // ALiBi: no position table

describe('inference checks', () => {
  const ids = (n: number) => Array.from({ length: n }, (_, i) => i % 600);
  it('fits prompt + new tokens into the position table, naming the flag to lower', () => {
    expect(() => checkPromptFits(ids(7), gpt2, { maxNewTokens: 57 })).not.toThrow();
    expect(() => checkPromptFits(ids(7), gpt2, { maxNewTokens: 64 })).toThrow(/the input is 7 tokens and --max_new_tokens 64 .* 64 positions: lower --max_new_tokens to 57 or less/);
    expect(() => checkPromptFits(ids(64), gpt2, { maxNewTokens: 1 })).toThrow(/the input is 64 tokens, but the model has 64 positions .*shorten --input/);
    expect(() => checkPromptFits(ids(7), gpt2, { maxLength: 65 })).toThrow(/--max_length 65 exceeds the model's 64 positions: use --max_length 64 or less/);
    expect(() => checkPromptFits(ids(7), gpt2, { maxLength: 64 })).not.toThrow();
    expect(() => checkPromptFits(ids(100_000), bloom, { maxNewTokens: 64 })).not.toThrow();
  });

  it('refuses ids past the embedding, and a tokenizer larger than the embedding', () => {
    expect(() => checkPromptFits([1, 600, 2], gpt2, { maxNewTokens: 1 })).toThrow(/token id 600 \(position 1\), past the model's 600 embedding rows.*--tokenizer/);
    expect(() => checkTokenizerFitsModel(6400, gpt2, 'dir')).toThrow(/the tokenizer has 6400 tokens but the model dir embeds only 600: pass the model's own tokenizer \(--tokenizer\)/);
    expect(() => checkTokenizerFitsModel(600, gpt2, 'dir')).not.toThrow();
  });

  it('the command exits 1 with the message, not a GatherV2 error', async () => {
    const run = promisify(execFile);
    const cli = join(ROOT, 'src', 'cli', 'inference.ts');
    const fail = (args: string[]) => run('npx', ['tsx', cli, '--pretrain', fixtureDir('gpt2'), '--backend', 'cpu', '--input', 'hello there', ...args], { cwd: ROOT }).then(
      () => { throw new Error('inference should have failed'); },
      (e: { code: number; stderr: string }) => e,
    );
    const [positions, vocab] = await Promise.all([fail([]), fail(['--tokenizer', join(ROOT, 'models', 'tiny-chat'), '--max_new_tokens', '4'])]);
    expect(positions.code).toBe(1);
    expect(positions.stderr).toMatch(/error: the input is \d+ tokens and --max_new_tokens 64 asks for 64 more, past the model's 64 positions: lower --max_new_tokens/);
    expect(vocab.code).toBe(1);
    expect(vocab.stderr).toMatch(/error: the tokenizer has 6400 tokens but the model \S+ embeds only 600/);
    expect(positions.stderr + vocab.stderr).not.toMatch(/GatherV2|at .*\.ts:\d+/);
  }, 120_000);
});
