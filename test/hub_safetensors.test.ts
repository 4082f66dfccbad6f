import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, writeFileSync, readFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { SafetensorsError, readSafetensors, writeSafetensors } from '../src/hub/safetensors.js';
import { loadPretrained, savePretrained } from '../src/models/pretrained.js';
import { ARCHS, fixtureDir } from './helpers/fixtures.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'st-'));
}

/** Hand-made file: u64 header length, JSON header, raw bytes. */
function rawFile(header: object, data: Buffer): string {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const f = join(tmp(), 'x.safetensors');
  writeFileSync(f, Buffer.concat([len, h, data]));
  return f;
}

describe('safetensors', () => {
  it('reads F32, F16, BF16, I32, I64 (floats upcast to float32)', () => {
    const f16 = Buffer.from(new Uint16Array([0x3c00, 0xc000, 0x3555]).buffer); // 1, -2, ~0.333
    const bf16 = Buffer.from(new Uint16Array([0x3f80, 0xc040]).buffer); // 1, -3
    const i64 = Buffer.from(new BigInt64Array([5n, -7n]).buffer);
    const i32 = Buffer.from(new Int32Array([9, -1]).buffer);
    const f32 = Buffer.from(new Float32Array([0.5]).buffer);
    const parts = [f16, bf16, i64, i32, f32];
    let off = 0;
    const names = ['h', 'b', 'l', 'i', 'f'];
    const dtypes = ['F16', 'BF16', 'I64', 'I32', 'F32'];
    const shapes = [[3], [2], [2], [2], [1]];
    const header: Record<string, unknown> = {};
    parts.forEach((p, k) => {
      header[names[k]!] = { dtype: dtypes[k], shape: shapes[k], data_offsets: [off, off + p.length] };
      off += p.length;
    });
    const { tensors } = readSafetensors(rawFile(header, Buffer.concat(parts)));
    expect(Array.from(tensors.get('h')!.data)).toEqual([1, -2, expect.closeTo(0.33325, 4)]);
    expect(Array.from(tensors.get('b')!.data)).toEqual([1, -3]);
    expect(Array.from(tensors.get('l')!.data)).toEqual([5, -7]);
    expect(Array.from(tensors.get('i')!.data)).toEqual([9, -1]);
    expect(Array.from(tensors.get('f')!.data)).toEqual([0.5]);
  });

  it('round-trips F32 exactly and BF16/F16 to their precision', () => {
    const data = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i) * 100);
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      const f = join(tmp(), 'r.safetensors');
      writeSafetensors(f, new Map([['w', { shape: [10, 10], data, dtype }]]));
      const back = readSafetensors(f).tensors.get('w')!;
      expect(back.shape).toEqual([10, 10]);
      const tol = dtype === 'F32' ? 0 : dtype === 'BF16' ? 4e-3 : 1e-3;
      data.forEach((v, i) => expect(Math.abs(back.data[i]! - v)).toBeLessThanOrEqual(tol * Math.abs(v) + 1e-7));
    }
  });

  it('refuses a truncated file, a header that overruns the file, and an unknown dtype', () => {
    const good = rawFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(16));
    const bytes = readFileSync(good);
    const cut = join(tmp(), 'cut.safetensors');
    writeFileSync(cut, bytes.subarray(0, bytes.length - 4));
    expect(() => readSafetensors(cut)).toThrow(/cut\.safetensors.*"w".*truncated/);
    const over = join(tmp(), 'over.safetensors');
    const b = Buffer.from(bytes);
    b.writeBigUInt64LE(10_000n);
    writeFileSync(over, b);
    expect(() => readSafetensors(over)).toThrow(/header length 10000 overruns/);
    const tiny = join(tmp(), 'tiny.safetensors');
    writeFileSync(tiny, Buffer.alloc(3));
    expect(() => readSafetensors(tiny)).toThrow(/truncated/);
    const odd = rawFile({ w: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, Buffer.alloc(4));
    expect(() => readSafetensors(odd)).toThrow(/unsupported dtype F8_E4M3/);
  });

  // Each header is wrong in one way; the error names the file, the tensor (where there is one) and the defect.
  const f32 = (offsets: unknown, shape: unknown = [2]) => ({ dtype: 'F32', shape, data_offsets: offsets });
  it.each([
    ['negative data_offsets', { w: f32([-8, 0]) }, /tensor "w": data_offsets begin is -8, not a non-negative integer/],
    ['fractional data_offsets', { w: f32([0, 7.5]) }, /tensor "w": data_offsets end is 7.5/],
    ['missing data_offsets', { w: { dtype: 'F32', shape: [2] } }, /tensor "w": "data_offsets" must be \[begin, end\], got nothing/],
    ['three data_offsets', { w: f32([0, 8, 16]) }, /tensor "w": "data_offsets" must be \[begin, end\]/],
    ['end before begin', { w: f32([8, 0]) }, /tensor "w": data_offsets \[8, 0\] end before they begin/],
    ['bytes that do not match dtype × shape', { w: f32([0, 12]) }, /tensor "w": shape \[2\] F32 needs 8 bytes but data_offsets \[0, 12\] span 12/],
    ['overlapping tensors', { a: f32([0, 8]), b: f32([4, 12]) }, /tensors "a" and "b" overlap/],
    ['a null header', null, /header must be a JSON object, got null/],
    ['an array header', [1, 2], /header must be a JSON object, got an array/],
    ['a null entry', { w: null }, /tensor "w": header entry must be an object/],
    ['a non-array shape', { w: f32([0, 8], 2) }, /tensor "w": "shape" must be an array/],
    ['a negative dimension', { w: f32([0, 8], [-2]) }, /tensor "w": shape\[0\] is -2/],
    ['a fractional dimension', { w: f32([0, 8], [1.5]) }, /tensor "w": shape\[0\] is 1.5/],
    ['a missing dtype', { w: { shape: [2], data_offsets: [0, 8] } }, /tensor "w": unsupported dtype undefined/],
    ['metadata that is not strings', { __metadata__: { format: 1 }, w: f32([0, 8]) }, /"__metadata__"."format" must be a string/],
    ['a tensor past the end of the data', { w: f32([16, 24]) }, /tensor "w": ends at byte 24 of the data section but the file holds only 16/],
  ])('refuses %s, naming the file and tensor', (_what, header, message) => {
    const f = rawFile(header as object, Buffer.alloc(16));
    expect(() => readSafetensors(f)).toThrow(message);
    expect(() => readSafetensors(f)).toThrow(f);
    expect(() => readSafetensors(f)).toThrow(SafetensorsError);
  });

  it('refuses a header that is not UTF-8 and one over the length limit, before allocating it', () => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(4n);
    const latin = join(tmp(), 'latin.safetensors');
    writeFileSync(latin, Buffer.concat([len, Buffer.from([0x7b, 0xe9, 0x20, 0x7d])]));
    expect(() => readSafetensors(latin)).toThrow(/latin\.safetensors: header is not valid UTF-8/);
    const huge = join(tmp(), 'huge.safetensors');
    len.writeBigUInt64LE(2n ** 62n);
    writeFileSync(huge, Buffer.concat([len, Buffer.from('{}')]));
    expect(() => readSafetensors(huge)).toThrow(/huge\.safetensors: header length 4611686018427387904 overruns/);
  });

  it('accepts empty tensors and gaps between tensors (neither overlaps anything)', () => {
    const f = rawFile({ e: f32([8, 8], [0]), a: f32([0, 8]), b: f32([12, 20]) }, Buffer.alloc(20));
    const { tensors } = readSafetensors(f);
    expect(tensors.get('e')!.data.length).toBe(0);
    expect(tensors.get('b')!.shape).toEqual([2]);
  });
});

describe('HF checkpoint directories', () => {
  it.each(ARCHS)('%s: a saved model reloads bit-identically and keeps HF names', (arch) => {
    const { model } = loadPretrained(fixtureDir(arch));
    const out = tmp();
    savePretrained(model, out);
    const { model: again } = loadPretrained(out);
    for (const [name, v] of model.params) {
      expect(Array.from(again.params.get(name)!.dataSync()), name).toEqual(Array.from(v.dataSync()));
    }
    const names = [...readSafetensors(join(out, 'model.safetensors')).tensors.keys()].sort();
    expect(names).toEqual([...readSafetensors(join(fixtureDir(arch), 'model.safetensors')).tensors.keys()].sort());
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(cfg.model_type).toBe(arch === 'llama3' ? 'llama' : arch);
    model.dispose();
    again.dispose();
  });

  it('loads a sharded checkpoint through model.safetensors.index.json', () => {
    const src = readSafetensors(join(fixtureDir('gpt2'), 'model.safetensors')).tensors;
    const dir = tmp();
    copyFileSync(join(fixtureDir('gpt2'), 'config.json'), join(dir, 'config.json'));
    const names = [...src.keys()];
    const half = Math.ceil(names.length / 2);
    const weightMap: Record<string, string> = {};
    [names.slice(0, half), names.slice(half)].forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(join(dir, file), new Map(part.map((n) => [n, { shape: src.get(n)!.shape, data: src.get(n)!.data }])));
      for (const n of part) weightMap[n] = file;
    });
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const { model } = loadPretrained(dir);
    expect(Array.from(model.params.get('transformer.wte.weight')!.dataSync())).toEqual(Array.from(src.get('transformer.wte.weight')!.data));
    model.dispose();
  });

  it('refuses an index whose shards leave the model directory, or that is malformed', () => {
    const dir = tmp();
    copyFileSync(join(fixtureDir('gpt2'), 'config.json'), join(dir, 'config.json'));
    const index = join(dir, 'model.safetensors.index.json');
    const cases: Array<[unknown, RegExp]> = [
      [{ weight_map: { 'transformer.wte.weight': '../outside.safetensors' } }, /climbs out of the model directory/],
      [{ weight_map: { 'transformer.wte.weight': '/etc/passwd' } }, /is an absolute path/],
      [{ weight_map: { 'transformer.wte.weight': 'a/../../b.safetensors' } }, /climbs out/],
      [{ weight_map: { 'transformer.wte.weight': 3 } }, /weight_map\["transformer\.wte\.weight"\] must be a shard file name/],
      [{ weight_map: [] }, /field "weight_map" must be an object/],
      [{ weight_map: {} }, /"weight_map" is empty/],
      [null, /expected a JSON object/],
      [{ weight_map: { 'transformer.wte.weight': 'missing.safetensors' } }, /names shard missing\.safetensors, which is missing/],
    ];
    for (const [content, message] of cases) {
      writeFileSync(index, JSON.stringify(content));
      expect(() => loadPretrained(dir), JSON.stringify(content)).toThrow(message);
      expect(() => loadPretrained(dir)).toThrow(index);
    }
    // A tensor the index places in a shard that does not hold it.
    writeSafetensors(join(dir, 's.safetensors'), new Map([['other', { shape: [1], data: new Float32Array(1) }]]));
    writeFileSync(index, JSON.stringify({ weight_map: { 'transformer.wte.weight': 's.safetensors' } }));
    expect(() => loadPretrained(dir)).toThrow(/s\.safetensors: has no tensor "transformer\.wte\.weight", which .*index\.json says it holds/);
  });

  it('refuses a checkpoint whose shapes disagree with config.json, naming the tensor', () => {
    const dir = tmp();
    const cfg = JSON.parse(readFileSync(join(fixtureDir('gpt2'), 'config.json'), 'utf8'));
    cfg.n_embd = 32;
    cfg.n_head = 4;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    copyFileSync(join(fixtureDir('gpt2'), 'model.safetensors'), join(dir, 'model.safetensors'));
    expect(() => loadPretrained(dir)).toThrow(/transformer\.\S+ has shape \[.*\] but config\.json implies/);
  });

  it('names the supported model types for an unknown one', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'mamba' }));
    expect(() => loadPretrained(dir)).toThrow(/unsupported model_type "mamba" \(supported: gpt2, opt, bloom, llama, qwen2, qwen3, mistral, gpt_neox, phi3, gemma2\)/);
  });

  it('loads GPT-2 hub checkpoints that omit the transformer. prefix', () => {
    const src = readSafetensors(join(fixtureDir('gpt2'), 'model.safetensors')).tensors;
    const dir = tmp();
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(fixtureDir('gpt2'), 'config.json'), join(dir, 'config.json'));
    writeSafetensors(join(dir, 'model.safetensors'), new Map([...src].map(([n, t]) => [n.replace(/^transformer\./, ''), { shape: t.shape, data: t.data }])));
    const { model } = loadPretrained(dir);
    expect(model.params.has('transformer.h.0.attn.c_attn.weight')).toBe(true);
    model.dispose();
  });
});
