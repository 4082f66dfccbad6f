import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { METRIC_PREFIXES, MetricsLogger, RunningMean, checkMetricKey, evalKey } from '../src/trainer/metrics.js';
import { crc32c, maskedCrc32c } from '../src/trainer/tfevents.js';

// --- a reader written independently of the writer: TFRecord framing and a generic protobuf field decoder ---

type Field = { field: number; wire: number; value: number | bigint | Uint8Array };

function readRecords(bytes: Uint8Array): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: Uint8Array[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const length = Number(view.getBigUint64(pos, true));
    expect(view.getUint32(pos + 8, true)).toBe(maskedCrc32c(bytes.subarray(pos, pos + 8)));
    const data = bytes.subarray(pos + 12, pos + 12 + length);
    expect(view.getUint32(pos + 12 + length, true)).toBe(maskedCrc32c(data));
    records.push(data);
    pos += 12 + length + 4;
  }
  expect(pos).toBe(bytes.length);
  return records;
}

function decodeFields(bytes: Uint8Array): Field[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fields: Field[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = bytes[pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
    }
  };
  while (pos < bytes.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) fields.push({ field, wire, value: varint() });
    else if (wire === 1) fields.push({ field, wire, value: view.getFloat64((pos += 8) - 8, true) });
    else if (wire === 5) fields.push({ field, wire, value: view.getFloat32((pos += 4) - 4, true) });
    else if (wire === 2) {
      const n = Number(varint());
      fields.push({ field, wire, value: bytes.subarray(pos, (pos += n)) });
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return fields;
}

const get = (fields: Field[], n: number) => fields.filter((f) => f.field === n).map((f) => f.value);
const text = (b: unknown) => new TextDecoder().decode(b as Uint8Array);

interface DecodedEvent {
  wallTime: number;
  step: bigint;
  fileVersion?: string;
  values: { tag: string; simpleValue?: number; text?: string; plugin?: string }[];
}

function decodeEvent(bytes: Uint8Array): DecodedEvent {
  const f = decodeFields(bytes);
  const summary = get(f, 5)[0] as Uint8Array | undefined;
  const values = summary
    ? get(decodeFields(summary), 1).map((v) => {
        const vf = decodeFields(v as Uint8Array);
        const tensor = get(vf, 8)[0] as Uint8Array | undefined;
        const metadata = get(vf, 9)[0] as Uint8Array | undefined;
        return {
          tag: text(get(vf, 1)[0]),
          simpleValue: get(vf, 2)[0] as number | undefined,
          text: tensor ? text(get(decodeFields(tensor), 8)[0]) : undefined,
          dtype: tensor ? get(decodeFields(tensor), 1)[0] : undefined,
          plugin: metadata ? text(get(decodeFields(get(decodeFields(metadata), 1)[0] as Uint8Array), 1)[0]) : undefined,
        };
      })
    : [];
  const version = get(f, 3)[0];
  return {
    wallTime: get(f, 1)[0] as number,
    step: (get(f, 2)[0] as bigint | undefined) ?? 0n,
    fileVersion: version === undefined ? undefined : text(version),
    values,
  };
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainer-metrics-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('crc32c', () => {
  it('gives the standard check values', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43); // RFC 3720 B.4: 32 bytes of ones
  });

  it('masks as TFRecord does: rotate right 15, add 0xa282ead8', () => {
    const crc = 0xe3069283;
    const rotated = ((crc >>> 15) | (crc << 17)) >>> 0;
    expect(maskedCrc32c(new TextEncoder().encode('123456789'))).toBe((rotated + 0xa282ead8) % 2 ** 32);
  });
});

describe('MetricsLogger', () => {
  it('appends {step, ...metrics} lines to metrics.jsonl and scalar events to a TensorBoard file', () => {
    let clock = 1700000000.25;
    const logger = new MetricsLogger(dir, () => clock);
    logger.log(1, { 'train/loss': 2.5, 'train/lr': 1e-4 });
    clock += 1;
    logger.log(300, { 'train/loss': 0.125 });
    // Lines are on disk before close(): a crash keeps them.
    const lines = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      { step: 1, 'train/loss': 2.5, 'train/lr': 1e-4 },
      { step: 300, 'train/loss': 0.125 },
    ]);
    logger.close();

    expect(path.basename(logger.eventFile)).toBe(`events.out.tfevents.1700000000.${os.hostname()}`);
    const events = readRecords(fs.readFileSync(logger.eventFile)).map(decodeEvent);
    expect(events).toHaveLength(3);
    expect(events[0]!.fileVersion).toBe('brain.Event:2');
    expect(events[0]!.wallTime).toBe(1700000000.25);
    expect(events[1]!.step).toBe(1n);
    expect(events[1]!.values.map((v) => v.tag)).toEqual(['train/loss', 'train/lr']);
    expect(events[1]!.values[0]!.simpleValue).toBe(2.5);
    expect(events[1]!.values[1]!.simpleValue).toBeCloseTo(1e-4, 10); // float32
    expect(events[2]!.step).toBe(300n); // a two-byte varint
    expect(events[2]!.wallTime).toBe(1700000001.25);
    expect(events[2]!.values[0]!.simpleValue).toBe(0.125);
  });

  it('writes samples to samples.jsonl and as TensorBoard text summaries', () => {
    const logger = new MetricsLogger(dir, () => 1700000000);
    logger.logText('samples/0', 'Q: hi\nA: héllo', 12);
    logger.close();
    const line = JSON.parse(fs.readFileSync(path.join(dir, 'samples.jsonl'), 'utf8'));
    expect(line).toEqual({ step: 12, tag: 'samples/0', text: 'Q: hi\nA: héllo' });
    const events = readRecords(fs.readFileSync(logger.eventFile)).map(decodeEvent);
    expect(events[1]!.values[0]).toMatchObject({ tag: 'samples/0', text: 'Q: hi\nA: héllo', plugin: 'text', dtype: 7n });
  });

  it('gives a second logger in the same second its own event file, and appends to metrics.jsonl', () => {
    const a = new MetricsLogger(dir, () => 1700000000);
    a.log(1, { 'eval/loss': 1 });
    a.close();
    const b = new MetricsLogger(dir, () => 1700000000);
    b.log(2, { 'eval/loss': 2 });
    b.close();
    expect(b.eventFile).not.toBe(a.eventFile);
    expect(fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
  });

  it('rejects keys outside the prefix table, bad steps, and logging after close', () => {
    const logger = new MetricsLogger(dir);
    expect(() => logger.log(1, { loss: 1 })).toThrow(/metric key 'loss' must start with one of train\//);
    expect(() => logger.log(1, { 'val/loss': 1 })).toThrow(/'val\/loss'/);
    expect(() => logger.log(-1, { 'train/loss': 1 })).toThrow(/step/);
    logger.close();
    expect(() => logger.log(1, { 'train/loss': 1 })).toThrow(/after close/);
  });
});

describe('metric key table', () => {
  it('documents exactly the agreed prefixes', () => {
    expect(Object.keys(METRIC_PREFIXES)).toEqual([
      'train/', 'eval/', 'objective/', 'policy/', 'value/', 'loss/', 'reward/', 'response/', 'time/',
      // TRL's DPO-family names (rewards/chosen, logps/rejected, logits/chosen, ...)
      'rewards/', 'logps/', 'logits/',
    ]);
    expect(() => checkMetricKey('policy/clipfrac')).not.toThrow();
    expect(() => checkMetricKey('policy/')).toThrow();
  });
});

describe('RunningMean', () => {
  it('averages since the last log, keeps train and eval apart, prefixes eval/ and clears', () => {
    const running = new RunningMean();
    running.add({ 'train/loss': 1, 'reward/accuracy': 0 });
    running.add({ 'train/loss': 2, 'reward/accuracy': 1 });
    running.add({ 'train/loss': 6 });
    running.add({ 'train/loss': 10 }, 'eval');
    expect(running.log()).toEqual({ 'train/loss': 3, 'reward/accuracy': 0.5 });
    expect(running.log()).toEqual({}); // cleared
    running.add({ 'train/loss': 20, 'reward/accuracy': 1 }, 'eval');
    expect(running.log('eval')).toEqual({ 'eval/loss': 15, 'eval/reward/accuracy': 1 });
    expect(evalKey('eval/loss')).toBe('eval/loss');
  });
});
