/**
 * Preference data for the reward model: every format's real file tokenizes into chosen/rejected sequences; the
 * truncation rule; batches; the train/eval split and the --test subset; bad input errors that name file and record.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import { beforeAll, describe, expect, it } from 'vitest';
import { getTemplate, loadPreferencePairs, type PreferencePair } from '../src/data/index.js';
import { Tokenizer } from '../src/hub/tokenizer.js';
import {
  collatePairs, fitSequence, loadRewardData, resolveRewardConfig, tokenizePreferencePairs, tokenizerAddsBos, TEST_SUBSET,
} from '../src/reward/index.js';
import { fixtureDir } from './helpers/fixtures.js';

const HH = 'datasets/preference/hh-rlhf-harmless-base-test.jsonl.gz';
const DPO_EN = 'datasets/preference/dpo_en_demo.json';
const DPO_ZH = 'datasets/preference/dpo_zh_demo.json';
const tmp = mkdtempSync(join(tmpdir(), 'reward-data-'));
const ha = getTemplate('human_assistant');
let tok: Tokenizer;

beforeAll(async () => {
  tok = await Tokenizer.fromDir(fixtureDir('gpt2'));
});

function write(name: string, content: string | Uint8Array): string {
  const path = join(tmp, name);
  writeFileSync(path, content);
  return path;
}

describe('each preference format tokenizes its real file', () => {
  it('hh-rlhf (.jsonl.gz): chosen/rejected = rendered prompt + answer + EOS, the dialogue text exactly', async () => {
    const { pairs, format } = await loadPreferencePairs(HH);
    expect(format).toBe('hh_rlhf');
    const { pairs: out, stats } = tokenizePreferencePairs(pairs, ha, tok, { maxLen: 100_000 });
    expect(stats.pairs + stats.droppedIdentical).toBe(300);
    expect(stats.promptTruncated + stats.answerTruncated).toBe(0);
    const first = out[0]!;
    const eos = tok.eosTokenId!;
    expect(first.chosen.at(-1)).toBe(eos);
    expect(first.rejected.at(-1)).toBe(eos);
    const dialogue = ha.renderPrompt(pairs[0]!.prompt) + ' ' + pairs[0]!.chosen;
    expect(tok.decode(first.chosen.slice(0, -1))).toBe(dialogue);
    expect(first.location).toEqual({ file: HH, line: 1 });
  });

  it.each([[DPO_EN, 60], [DPO_ZH, 60]])('ShareGPT-style %s (conversations + chosen/rejected objects)', async (file, n) => {
    const { pairs, format } = await loadPreferencePairs(file);
    expect(format).toBe('sharegpt');
    const chatml = getTemplate('chatml');
    const { pairs: out, stats } = tokenizePreferencePairs(pairs, chatml, tok, { maxLen: 100_000 });
    expect(stats.pairs + stats.droppedIdentical).toBe(n);
    const text = tok.decode(out[0]!.chosen.slice(0, -1));
    expect(text).toBe(chatml.renderPrompt(pairs[0]!.prompt) + pairs[0]!.chosen + '<|im_end|>');
  });

  it('rm-static style prompt/chosen/rejected/response as JSONL, CSV and Arrow: the same tokens as the hh-rlhf dialogues', async () => {
    const { pairs } = await loadPreferencePairs(HH, { maxRecords: 20 });
    const rows = pairs.map((p) => ({ prompt: ha.renderPrompt(p.prompt), response: ' ' + p.chosen, chosen: ' ' + p.chosen, rejected: ' ' + p.rejected }));
    const csvCell = (s: string) => `"${s.replace(/"/g, '""')}"`;
    const files = [
      write('rm.jsonl', rows.map((r) => JSON.stringify(r)).join('\n') + '\n'),
      write('rm.csv', 'prompt,response,chosen,rejected\n' + rows.map((r) => [r.prompt, r.response, r.chosen, r.rejected].map(csvCell).join(',')).join('\n') + '\n'),
      write('rm.arrow', tableToIPC(tableFromArrays({
        prompt: rows.map((r) => r.prompt), response: rows.map((r) => r.response), chosen: rows.map((r) => r.chosen), rejected: rows.map((r) => r.rejected),
      }), 'file')),
    ];
    const reference = tokenizePreferencePairs(pairs, ha, tok, { maxLen: 64 }).pairs.map((p) => [p.chosen, p.rejected]);
    for (const file of files) {
      const r = await loadPreferencePairs(file);
      expect(r.format).toBe('rm_static');
      expect(tokenizePreferencePairs(r.pairs, ha, tok, { maxLen: 64 }).pairs.map((p) => [p.chosen, p.rejected])).toEqual(reference);
    }
  });
});

describe('truncation to max_len', () => {
  const bos = [1];
  const prompt = [10, 11, 12, 13, 14, 15, 16, 17];
  it('a sequence that fits is untouched', () => {
    expect(fitSequence(bos, prompt, [20, 21, 2], 12)).toEqual({ ids: [1, ...prompt, 20, 21, 2], promptCut: false, answerCut: false });
  });
  it('a long prompt loses its oldest tokens so the whole answer (with EOS) stays; BOS stays first', () => {
    expect(fitSequence(bos, prompt, [20, 21, 2], 8)).toEqual({ ids: [1, 14, 15, 16, 17, 20, 21, 2], promptCut: true, answerCut: false });
  });
  it('a long answer keeps the last half of the room for the prompt and is cut on the right', () => {
    const answer = [20, 21, 22, 23, 24, 25, 26, 2];
    // room 9: prompt keeps its last 4, answer its first 5
    expect(fitSequence(bos, prompt, answer, 10)).toEqual({ ids: [1, 14, 15, 16, 17, 20, 21, 22, 23, 24], promptCut: true, answerCut: true });
    // a short prompt is kept whole and the answer gets the rest
    expect(fitSequence([], [10, 11], answer, 6)).toEqual({ ids: [10, 11, 20, 21, 22, 23], promptCut: false, answerCut: true });
  });
  it('max_len without room for a prompt and an answer token is an error', () => {
    expect(() => fitSequence(bos, prompt, [2], 2)).toThrow(/no room/);
  });
  it('counts truncations and drops pairs that become identical', () => {
    const pair = (chosen: string, rejected: string): PreferencePair => ({ prompt: [{ role: 'user', content: 'Tell me something about the weather today please' }], chosen, rejected });
    const { pairs, stats } = tokenizePreferencePairs(
      [pair('It will be sunny and warm all day long, then rain.', 'It will be sunny and warm all day long, then snow.'), pair('Yes.', 'No.')],
      ha, tok, { maxLen: 12 },
    );
    expect(stats.droppedIdentical).toBe(1); // the first pair differs only after the cut
    expect(stats.pairs).toBe(1);
    expect(stats.promptTruncated).toBeGreaterThanOrEqual(2);
    expect(stats.answerTruncated).toBe(2);
    expect(pairs[0]!.chosen.length).toBeLessThanOrEqual(12);
  });
});

describe('BOS and batches', () => {
  it('BOS is added only where the tokenizer itself adds one (LLaMA, OPT), not for GPT-2', async () => {
    expect(tokenizerAddsBos(tok)).toBe(false);
    const llama = await Tokenizer.fromDir(fixtureDir('llama'));
    expect(tokenizerAddsBos(llama)).toBe(true);
    const p: PreferencePair = { prompt: [{ role: 'user', content: 'hi' }], chosen: 'a', rejected: 'b' };
    expect(tokenizePreferencePairs([p], ha, llama, { maxLen: 64, addBos: true }).pairs[0]!.chosen[0]).toBe(llama.bosTokenId);
  });

  it('collatePairs: chosen rows then rejected rows, right-padded, masks and token count', () => {
    const b = collatePairs([{ chosen: [5, 6, 7], rejected: [8] }, { chosen: [9, 9], rejected: [4, 4, 4, 4] }], 0);
    expect(b.pairs).toBe(2);
    expect(b.inputIds).toEqual([[5, 6, 7, 0], [9, 9, 0, 0], [8, 0, 0, 0], [4, 4, 4, 4]]);
    expect(b.attentionMask).toEqual([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]);
    expect(b.tokens).toBe(10);
    expect([b.chosenRows, b.rejectedRows]).toEqual([[0, 1], [2, 3]]);
    expect(b.answerMask).toBeUndefined(); // these pairs do not know where their prompts end
  });

  it('collatePairs scores each distinct sequence once: pairs sharing answers share rows', () => {
    // three ranked answers a > b > c of one prompt: three pairs, three rows
    const [a, bb, c] = [[1, 2, 3], [1, 2, 4, 4], [1, 2, 5]];
    const b = collatePairs([
      { chosen: a, rejected: bb, chosenPromptLen: 2, rejectedPromptLen: 2 },
      { chosen: a, rejected: c, chosenPromptLen: 2, rejectedPromptLen: 2 },
      { chosen: bb, rejected: c, chosenPromptLen: 2, rejectedPromptLen: 2 },
      { chosen: a, rejected: c, chosenPromptLen: 1, rejectedPromptLen: 2 }, // same ids, another answer mask: a row of its own
    ], 0);
    expect(b.pairs).toBe(4);
    expect(b.inputIds).toEqual([[1, 2, 3, 0], [1, 2, 4, 4], [1, 2, 3, 0], [1, 2, 5, 0]]);
    expect(b.chosenRows).toEqual([0, 0, 1, 2]);
    expect(b.rejectedRows).toEqual([1, 3, 3, 3]);
    expect(b.answerMask).toEqual([[0, 0, 1, 0], [0, 0, 1, 1], [0, 1, 1, 0], [0, 0, 1, 0]]);
    expect(b.tokens).toBe(13);
  });

  it('each side knows where its prompt ends (after fitting), and collatePairs marks the answer tokens', () => {
    const question = 'Tell me something about the weather today please, and about tomorrow, and about the whole week ahead of us';
    const prompt = tok.encode(ha.renderPrompt([{ role: 'user', content: question }]), { addSpecialTokens: false });
    const p: PreferencePair = { prompt: [{ role: 'user', content: question }], chosen: 'Sunny and warm.', rejected: 'Rain.' };
    const whole = tokenizePreferencePairs([p], ha, tok, { maxLen: 1000 }).pairs[0]!;
    expect(whole.chosenPromptLen).toBe(prompt.length);
    expect(whole.rejectedPromptLen).toBe(prompt.length);
    expect(whole.chosen.slice(0, prompt.length)).toEqual(prompt);
    // room for the answer and its last answerLen + 2 prompt tokens: the prompt loses its left part, and the answer
    // keeps its place after it
    const answerLen = whole.chosen.length - prompt.length;
    expect(prompt.length).toBeGreaterThan(answerLen + 2);
    const cut = tokenizePreferencePairs([p], ha, tok, { maxLen: 2 * answerLen + 2 }).pairs[0]!;
    expect(cut.chosenPromptLen).toBe(answerLen + 2);
    expect(cut.chosen.slice(cut.chosenPromptLen)).toEqual(whole.chosen.slice(prompt.length));
    const b = collatePairs([{ chosen: [5, 6, 7], rejected: [8, 9], chosenPromptLen: 1, rejectedPromptLen: 1 }], 0);
    expect(b.answerMask).toEqual([[0, 1, 1], [0, 1, 0]]);
  });
});

describe('train/eval split', () => {
  const base = { dataset: HH, evalRatio: 0.1, maxDatasetsSize: 0, test: false, skipBadRecords: false, seed: 42 };
  it('--eval_ratio holds out a seeded share', async () => {
    const d = await loadRewardData(base);
    expect(d.train.length).toBe(270);
    expect(d.eval.length).toBe(30);
    const again = await loadRewardData(base);
    expect(again.eval.map((p) => p.location!.line)).toEqual(d.eval.map((p) => p.location!.line));
  });
  it('--test: 64 train and 32 eval pairs; --max_datasets_size caps the records read', async () => {
    const t = await loadRewardData({ ...base, test: true });
    expect([t.train.length, t.eval.length]).toEqual([TEST_SUBSET.train, TEST_SUBSET.eval]);
    const capped = await loadRewardData({ ...base, maxDatasetsSize: 50 });
    expect(capped.train.length + capped.eval.length).toBe(50);
  });
  it('--eval_dataset is used as is', async () => {
    const d = await loadRewardData({ ...base, evalDataset: DPO_EN, maxDatasetsSize: 40 });
    expect([d.train.length, d.eval.length]).toEqual([40, 40]);
  });
});

describe('bad input', () => {
  it('a record missing a field names file and line; --skip_bad_records skips it', async () => {
    const file = write('bad.jsonl', [
      JSON.stringify({ chosen: '\n\nHuman: a\n\nAssistant: b', rejected: '\n\nHuman: a\n\nAssistant: c' }),
      JSON.stringify({ chosen: '\n\nHuman: a\n\nAssistant: b' }),
    ].join('\n'));
    const opts = { dataset: file, evalRatio: 0, maxDatasetsSize: 0, test: false, skipBadRecords: false, seed: 1 };
    await expect(loadRewardData(opts)).rejects.toThrow(`${file}:2: missing field "rejected"`);
    const d = await loadRewardData({ ...opts, skipBadRecords: true });
    expect(d.train).toHaveLength(1);
    expect(d.notes.join('\n')).toMatch(/1 bad records skipped/);
  });

  it('a ShareGPT prompt ending with an assistant turn names the record', async () => {
    const file = write('bad.json', JSON.stringify([
      { conversations: [{ from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }], chosen: { from: 'gpt', value: 'x' }, rejected: { from: 'gpt', value: 'y' } },
    ]));
    await expect(loadPreferencePairs(file)).rejects.toThrow(`${file}[0]: the prompt must end with a user (human) turn`);
  });

  it('a conversation the template cannot render names the record and the template', () => {
    const p: PreferencePair = {
      prompt: [{ role: 'user', content: 'q' }, { role: 'system', content: 'late system message' }, { role: 'user', content: 'q2' }],
      chosen: 'a', rejected: 'b', location: { file: 'x.jsonl', line: 7 },
    };
    expect(() => tokenizePreferencePairs([p], ha, tok, { maxLen: 64 })).toThrow(/^x\.jsonl:7: template "human_assistant": message 1 is a system message/);
  });

  it('bad settings name the flag and what is allowed', () => {
    const ok = { pretrain: 'p', dataset: 'd', savePath: 's' };
    expect(() => resolveRewardConfig({ ...ok, lossFn: 'hinge' as never })).toThrow('--loss_fn: "hinge" is not one of log_sig, log_exp');
    expect(() => resolveRewardConfig({ ...ok, rewardReduction: 'max' as never })).toThrow('--reward_reduction: "max" is not one of last, mean');
    expect(() => resolveRewardConfig({ ...ok, maxLen: 1 })).toThrow('--max_len: must be an integer >= 2, got 1');
    expect(() => resolveRewardConfig({ ...ok, evalRatio: 1 })).toThrow('--eval_ratio: must be in [0, 1), got 1');
    expect(() => resolveRewardConfig({ ...ok, promptTemplate: 'vicuna' })).toThrow(/--prompt_template: "vicuna" is not one of .*human_assistant/);
    expect(() => resolveRewardConfig({ ...ok, mergeLoraWeights: true })).toThrow(/--merge_lora_weights: needs --lora_rank > 0/);
    expect(() => resolveRewardConfig({ ...ok, dataset: '' })).toThrow('--dataset: is required');
    expect(resolveRewardConfig(ok)).toMatchObject({ lossFn: 'log_sig', rewardReduction: 'last', maxLen: 512, promptTemplate: 'auto' });
  });
});
