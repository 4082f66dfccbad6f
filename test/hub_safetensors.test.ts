import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, writeFileSync, readFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../src/engine/tf.js';
import { readSafetensors, writeSafetensors } from '../src/hub/safetensors.js';
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
