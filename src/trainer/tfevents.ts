/**
 * TensorBoard event records, encoded by hand (no protobuf or TensorFlow dependency).
 *
 * An event file is a sequence of TFRecords:
 *   uint64 length (little-endian) | uint32 masked crc32c(length bytes) | data | uint32 masked crc32c(data)
 * where data is a serialized `tensorflow.Event` protobuf:
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; float simple_value = 2; TensorProto tensor = 8; SummaryMetadata metadata = 9; }
 * Text summaries (TensorBoard's text plugin) are a string TensorProto { DataType dtype = 1 (DT_STRING = 7);
 * repeated bytes string_val = 8; } with metadata { PluginData plugin_data = 1 { string plugin_name = 1 = "text" } }.
 */

// --- crc32c (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord framing requires ---

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** crc32c of `bytes` (check value: crc32c("123456789") = 0xE3069283). */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC32C_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's masking: rotate right by 15 bits and add a constant, so CRCs of CRCs stay well-distributed. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord around `data`. */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

// --- a minimal protobuf writer: varints, fixed 32/64-bit, length-delimited fields ---

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

class ProtoWriter {
  private readonly bytes: number[] = [];

  /** Unsigned varint of a non-negative safe integer (7 bits per byte, low bits first). */
  private varint(value: number): void {
    let v = value;
    while (v >= 0x80) {
      this.bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.bytes.push(v);
  }

  private key(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  uint64(field: number, value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`protobuf: field ${field} needs an integer >= 0, got ${value}`);
    this.key(field, WIRE_VARINT);
    this.varint(value);
    return this;
  }

  double(field: number, value: number): this {
    this.key(field, WIRE_FIXED64);
    const buf = new DataView(new ArrayBuffer(8));
    buf.setFloat64(0, value, true);
    for (let i = 0; i < 8; i++) this.bytes.push(buf.getUint8(i));
    return this;
  }

  float(field: number, value: number): this {
    this.key(field, WIRE_FIXED32);
    const buf = new DataView(new ArrayBuffer(4));
    buf.setFloat32(0, value, true);
    for (let i = 0; i < 4; i++) this.bytes.push(buf.getUint8(i));
    return this;
  }

  bytesField(field: number, value: Uint8Array): this {
    this.key(field, WIRE_LENGTH_DELIMITED);
    this.varint(value.length);
    for (const b of value) this.bytes.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytesField(field, new TextEncoder().encode(value));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** A scalar or text value of one summary. */
export type SummaryValue = { tag: string; simpleValue: number } | { tag: string; text: string };

const DT_STRING = 7;

function encodeSummaryValue(value: SummaryValue): Uint8Array {
  const w = new ProtoWriter().string(1, value.tag);
  if ('simpleValue' in value) return w.float(2, value.simpleValue).finish();
  const tensor = new ProtoWriter().uint64(1, DT_STRING).string(8, value.text).finish();
  const pluginData = new ProtoWriter().string(1, 'text').finish();
  const metadata = new ProtoWriter().bytesField(1, pluginData).finish();
  return w.bytesField(8, tensor).bytesField(9, metadata).finish();
}

/** What one event carries: the file-version header, or summary values at a step. */
export interface EventFields {
  /** Seconds since the epoch (fractional). */
  wallTime: number;
  /** Training step the values belong to. */
  step: number;
  /** Only in a file's first record: "brain.Event:2". */
  fileVersion?: string;
  /** Scalars and texts logged at this step. */
  values?: SummaryValue[];
}

/** A serialized `tensorflow.Event`. */
export function encodeEvent(event: EventFields): Uint8Array {
  const w = new ProtoWriter().double(1, event.wallTime).uint64(2, event.step);
  if (event.fileVersion !== undefined) w.string(3, event.fileVersion);
  if (event.values !== undefined && event.values.length > 0) {
    const summary = new ProtoWriter();
    for (const v of event.values) summary.bytesField(1, encodeSummaryValue(v));
    w.bytesField(5, summary.finish());
  }
  return w.finish();
}
