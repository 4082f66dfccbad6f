/**
 * The flat view of a parameter list that ddp and zero2 communicate through: every parameter laid end to end in list
 * order (one Float32Array of `total` elements), and zero2's partition of it into one contiguous range per rank.
 *
 * zero2 shards by flat slices, not by whole parameters, so every rank owns the same number of elements (±1) however
 * uneven the parameter sizes are (a token embedding alone can be half of a small model). A parameter that straddles a
 * boundary is split into one piece per rank; each piece is updated by its owner like a parameter of its own.
 */
import { tf, type Tensor } from '../engine/tf.js';

/** Where a parameter sits in the flat vector. */
export interface ParamSlot {
  name: string;
  shape: number[];
  size: number;
  /** Offset of its first element in the flat vector. */
  offset: number;
}

export interface FlatLayout {
  slots: ParamSlot[];
  byName: Map<string, ParamSlot>;
  total: number;
}

/** A parameter's part of one rank's range. */
export interface Piece {
  name: string;
  /** First element of the piece inside its parameter (row-major). */
  paramOffset: number;
  length: number;
  /** First element of the piece inside the rank's range. */
  shardOffset: number;
}

export function flatLayout(params: readonly (readonly [string, { readonly shape: readonly number[] }])[]): FlatLayout {
  const slots: ParamSlot[] = [];
  const byName = new Map<string, ParamSlot>();
  let offset = 0;
  for (const [name, p] of params) {
    if (byName.has(name)) throw new Error(`flatLayout: parameter '${name}' is listed twice`);
    const size = tf.util.sizeFromShape([...p.shape]);
    const slot = { name, shape: [...p.shape], size, offset };
    slots.push(slot);
    byName.set(name, slot);
    offset += size;
  }
  return { slots, byName, total: offset };
}

/** Elements per rank: `total` split as evenly as possible, the first `total % worldSize` ranks one element more. */
export function partitionCounts(total: number, worldSize: number): number[] {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new Error(`partitionCounts: invalid world size ${worldSize}`);
  const base = Math.floor(total / worldSize);
  const extra = total % worldSize;
  return Array.from({ length: worldSize }, (_, r) => base + (r < extra ? 1 : 0));
}

/** [start, end) of rank `rank`'s range for these counts. */
export function rangeOf(counts: number[], rank: number): [number, number] {
  let start = 0;
  for (let r = 0; r < rank; r++) start += counts[r]!;
  return [start, start + counts[rank]!];
}

/** The pieces of the parameters that overlap the flat range [start, end), in layout order. */
export function piecesIn(layout: FlatLayout, start: number, end: number): Piece[] {
  const pieces: Piece[] = [];
  for (const slot of layout.slots) {
    const from = Math.max(start, slot.offset);
    const to = Math.min(end, slot.offset + slot.size);
    if (to > from) pieces.push({ name: slot.name, paramOffset: from - slot.offset, length: to - from, shardOffset: from - start });
  }
  return pieces;
}

/**
 * Copies named tensors into one flat Float32Array in layout order. Parameters missing from `tensors` stay zero (a
 * parameter unused by this rank's batch contributes a zero gradient, as in torch's DDP).
 */
export function flatten(layout: FlatLayout, tensors: Map<string, Tensor>): Float32Array {
  const flat = new Float32Array(layout.total);
  for (const [name, t] of tensors) {
    const slot = layout.byName.get(name);
    if (!slot) throw new Error(`flatten: tensor '${name}' is not one of the ${layout.slots.length} parameters`);
    if (t.size !== slot.size) throw new Error(`flatten: tensor '${name}' has shape [${t.shape}], the parameter [${slot.shape}]`);
    flat.set(t.dataSync() as Float32Array, slot.offset);
  }
  return flat;
}

/** The inverse of `flatten`: one tensor per parameter, shaped like it. */
export function unflatten(layout: FlatLayout, flat: Float32Array): Map<string, Tensor> {
  if (flat.length !== layout.total) throw new Error(`unflatten: ${flat.length} values for ${layout.total} parameter elements`);
  const out = new Map<string, Tensor>();
  for (const slot of layout.slots) out.set(slot.name, tf.tensor(flat.subarray(slot.offset, slot.offset + slot.size), slot.shape, 'float32'));
  return out;
}
