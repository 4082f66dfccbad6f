/**
 * The checks every stage's config resolver makes, with errors that name the flag and say what is allowed:
 *
 *   const check = configChecks();
 *   check.required([['--pretrain', c.pretrain], ...]);
 *   check.intAtLeast('--batch_size', c.batchSize, 1);
 *   check.inRange('--lr', c.lr, 0, Infinity);
 *   check.oneOf('--loss_type', c.lossType, LOSS_TYPES);
 */
import { FROZEN_DTYPES } from '../models/ops/frozen_dtypes.js';

export interface RangeOptions {
  /** The lower bound itself is not allowed: (lo, hi]. */
  loOpen?: boolean;
  /** The upper bound itself is not allowed: [lo, hi). */
  hiOpen?: boolean;
}

export interface ConfigChecks {
  fail(flag: string, msg: string): never;
  /** Each [flag, value] must be a non-empty string. */
  required(fields: readonly (readonly [string, unknown])[]): void;
  intAtLeast(flag: string, v: number, min: number): void;
  inRange(flag: string, v: number, lo: number, hi: number, o?: RangeOptions): void;
  oneOf(flag: string, v: string, allowed: readonly string[]): void;
  /** The checks of the fields every training stage has (LoRA, seed, checkpoint cadence). */
  common(c: CommonFields): void;
  /**
   * --frozen_dtype: one of FROZEN_DTYPES, and never with --merge_lora_weights (a packed base cannot take the merge).
   * `needsAdapter`: the stage has nothing frozen without an adapter (SFT, RM), so a packed dtype needs --lora_rank.
   */
  frozenDtype(c: { frozenDtype?: string; loraRank: number; mergeLoraWeights: boolean }, needsAdapter?: boolean): void;
}

/** Fields each training stage has under the same flag names. */
export interface CommonFields {
  lr: number;
  weightDecay: number;
  gradClip: number;
  loraRank: number;
  loraDropout: number;
  saveSteps: number;
  seed?: number;
  maxDatasetsSize?: number;
}

/** Config checks; each failure throws `Error("--flag: message")`. */
export function configChecks(): ConfigChecks {
  const fail = (flag: string, msg: string): never => {
    throw new Error(`${flag}: ${msg}`);
  };
  const intAtLeast = (flag: string, v: number, min: number): void => {
    if (!Number.isInteger(v) || v < min) fail(flag, `must be an integer >= ${min}, got ${v}`);
  };
  const inRange = (flag: string, v: number, lo: number, hi: number, o: RangeOptions = {}): void => {
    if (!Number.isFinite(v) || (o.loOpen ? v <= lo : v < lo) || (o.hiOpen ? v >= hi : v > hi)) {
      fail(flag, `must be in ${o.loOpen ? '(' : '['}${lo}, ${hi}${o.hiOpen ? ')' : ']'}, got ${v}`);
    }
  };
  return {
    fail,
    intAtLeast,
    inRange,
    required(fields) {
      for (const [flag, v] of fields) if (typeof v !== 'string' || v === '') fail(flag, 'is required');
    },
    oneOf(flag, v, allowed) {
      if (!allowed.includes(v)) fail(flag, `"${v}" is not one of ${allowed.join(', ')}`);
    },
    common(c) {
      inRange('--lr', c.lr, 0, Infinity);
      inRange('--weight_decay', c.weightDecay, 0, Infinity);
      inRange('--grad_clip', c.gradClip, 0, Infinity);
      intAtLeast('--lora_rank', c.loraRank, 0);
      inRange('--lora_dropout', c.loraDropout, 0, 1, { hiOpen: true });
      intAtLeast('--save_steps', c.saveSteps, 0);
      if (c.seed !== undefined) intAtLeast('--seed', c.seed, 0);
      if (c.maxDatasetsSize !== undefined) intAtLeast('--max_datasets_size', c.maxDatasetsSize, 0);
    },
    frozenDtype(c, needsAdapter = false) {
      const d = c.frozenDtype;
      if (d === undefined || d === 'float32') return;
      if (!(FROZEN_DTYPES as readonly string[]).includes(d)) fail('--frozen_dtype', `must be one of ${FROZEN_DTYPES.join(', ')}, got ${d}`);
      if (needsAdapter && c.loraRank === 0) fail('--frozen_dtype', `${d} packs the frozen base under a LoRA adapter: add --lora_rank R (full-weight training keeps every weight in float32)`);
      if (c.loraRank > 0 && c.mergeLoraWeights) {
        fail('--merge_lora_weights', `cannot merge into a base held in ${d} (--frozen_dtype): save the adapter, then merge it into the float32 checkpoint with convert`);
      }
    },
  };
}

/** The entries of `o` whose value is not undefined (so that defaults fill them). */
export function definedFields<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
