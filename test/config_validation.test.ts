// config.json numbers checked before anything is built: every refusal names the file and the config.json key.
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputFileError } from '../src/hub/input_error.js';
import { readConfig } from '../src/models/pretrained.js';
import { ARCHS, fixtureDir } from './helpers/fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'config-validation-'));
let n = 0;
function configDir(raw: unknown): string {
  const dir = join(tmp, `m${n++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), typeof raw === 'string' ? raw : JSON.stringify(raw));
  return dir;
}
const fixtureConfig = (arch: string): Record<string, unknown> => JSON.parse(readFileSync(join(fixtureDir(arch as never), 'config.json'), 'utf8'));

describe('config.json validation', () => {
  it.each(ARCHS)('accepts the %s fixture', (arch) => {
    expect(readConfig(fixtureDir(arch)).modelType).toBe(fixtureConfig(arch).model_type);
  });

  it.each([
    ['gpt2', { n_layer: 1e9 }, /field "n_layer" is 1000000000, beyond the sane limit of 1024/],
    ['gpt2', { n_head: 0 }, /field "n_head" is 0: it must be a positive integer/],
    ['gpt2', { n_head: 3 }, /field "n_embd" is 64, which 3 attention heads \("n_head"\) do not divide/],
    ['gpt2', { n_head: 2.5 }, /field "n_head" is 2.5: it must be a positive integer/],
    ['gpt2', { n_embd: -64 }, /field "n_embd" is -64/],
    ['gpt2', { vocab_size: 1e12 }, /field "vocab_size" is 1000000000000, beyond the sane limit/],
    ['gpt2', { n_positions: 0 }, /field "n_positions" is 0/],
    ['gpt2', { n_inner: 1e300 }, /field "n_inner" is 1e\+300/],
    ['gpt2', { layer_norm_epsilon: -1 }, /field "layer_norm_epsilon" is -1: it must be a small positive number/],
    ['gpt2', { resid_pdrop: 1.5 }, /field "resid_pdrop" is 1.5: it must be a probability/],
    ['opt', { ffn_dim: 0 }, /field "ffn_dim" is 0/],
    ['opt', { word_embed_proj_dim: 1e7 }, /field "word_embed_proj_dim" is 10000000, beyond/],
    ['bloom', { n_head: 7 }, /do not divide/],
    ['llama', { num_key_value_heads: 5 }, /field "num_key_value_heads" is 5, which does not divide the \d+ attention heads \("num_attention_heads"\)/],
    ['llama', { rope_parameters: { rope_theta: 0, rope_type: 'default' } }, /field "rope_parameters.rope_theta" is 0: it must be a positive number/],
    ['llama', { num_hidden_layers: 4096, hidden_size: 131072, intermediate_size: 1 << 20, num_attention_heads: 64, num_key_value_heads: 8 }, /beyond the sane limit of 1024/],
    ['llama', { num_hidden_layers: 1000, hidden_size: 131072, intermediate_size: 1 << 20, num_attention_heads: 64, num_key_value_heads: 8 }, /a model of ~\S+ parameters .*beyond any real checkpoint/],
  ])('%s with %j is refused', (arch, change, message) => {
    const dir = configDir({ ...fixtureConfig(arch), ...change });
    const file = join(dir, 'config.json');
    expect(() => readConfig(dir)).toThrow(message);
    expect(() => readConfig(dir)).toThrow(`${file}: `);
    expect(() => readConfig(dir)).toThrow(InputFileError);
  });

  it('accepts an explicit head_dim that does not divide the width (as Gemma and Qwen3 ship)', () => {
    const dir = configDir({ ...fixtureConfig('llama'), head_dim: 6 });
    expect(readConfig(dir).headDim).toBe(6);
  });

  it.each([
    ['not JSON', '{ nope', /invalid JSON/],
    ['null', 'null', /expected a JSON object, got null/],
    ['an array', '[]', /expected a JSON object, got an array/],
    ['Latin-1 bytes', Buffer.from('{"model_type": "gpt2", "x": "\u00e9"}', 'latin1').toString('binary'), /not valid UTF-8/],
    ['an unknown model_type', '{"model_type": "mamba"}', /unsupported model_type "mamba"/],
    ['a missing field', '{"model_type": "gpt2", "vocab_size": 10}', /missing numeric field "n_embd" or "hidden_size"/],
    ['an unknown activation', JSON.stringify({ ...fixtureConfig('gpt2'), activation_function: 'swiglu9' }), /Unsupported activation "swiglu9"/],
  ])('refuses %s, naming the file', (_what, text, message) => {
    const dir = configDir('');
    writeFileSync(join(dir, 'config.json'), Buffer.from(text, text.includes('\u00e9') ? 'latin1' : 'utf8'));
    expect(() => readConfig(dir)).toThrow(message);
    expect(() => readConfig(dir)).toThrow(join(dir, 'config.json'));
    expect(() => readConfig(dir)).toThrow(InputFileError);
  });
});
