/**
 * Rotary position embedding frequencies, one function per `rope_type` of transformers' `modeling_rope_utils`
 * (default, linear, dynamic, llama3, yarn): each gives the inverse frequencies of the rotated dimensions and the
 * factor cos/sin are multiplied by (`attention_scaling`, 1 except for YaRN).
 */

export const ROPE_TYPES = ['default', 'linear', 'dynamic', 'llama3', 'yarn'] as const;
export type RopeType = (typeof ROPE_TYPES)[number];

export interface RopeSpec {
  type: RopeType;
  theta: number;
  /** Rotated dimensions per head: int(head_dim · partial_rotary_factor), even. */
  dim: number;
  /** linear / dynamic / llama3 / yarn: the context extension factor. */
  factor: number;
  /** llama3 / yarn: the pretraining context; dynamic: max_position_embeddings. */
  originalMaxPositions: number;
  /** llama3 */
  lowFreqFactor: number;
  highFreqFactor: number;
  /** yarn */
  betaFast: number;
  betaSlow: number;
  attentionFactor: number | null;
  mscale: number | null;
  mscaleAllDim: number | null;
  truncate: boolean;
}

/** 1/θ^(2i/d) for i < d/2, the unscaled frequencies. */
export function defaultInvFreq(theta: number, dim: number): Float64Array {
  const out = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) out[i] = 1 / Math.pow(theta, (2 * i) / dim);
  return out;
}

/** Llama 3.1: low frequencies (long wavelengths) divided by factor, high ones kept, a smooth blend in between. */
function llama3InvFreq(s: RopeSpec): Float64Array {
  const inv = defaultInvFreq(s.theta, s.dim);
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositions / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

function yarnMscale(scale: number, m = 1): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/** YaRN: per dimension a ramp between interpolated (θ-scaled by factor) and extrapolated (plain) frequencies. */
function yarnInvFreq(s: RopeSpec): { invFreq: Float64Array; scaling: number } {
  const { dim, theta, factor } = s;
  // The dimension whose wavelength makes `rotations` turns over the pretraining context.
  const correctionDim = (rotations: number) => (dim * Math.log(s.originalMaxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correctionDim(s.betaFast);
  let high = correctionDim(s.betaSlow);
  if (s.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001; // as transformers: no division by zero
  const half = dim / 2;
  const invFreq = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const extrapolation = 1 - ramp; // weight of the plain frequency
    const plain = 1 / Math.pow(theta, (2 * i) / dim);
    invFreq[i] = (plain / factor) * (1 - extrapolation) + plain * extrapolation;
  }
  let scaling = s.attentionFactor;
  if (scaling === null) {
    scaling = s.mscale && s.mscaleAllDim ? yarnMscale(factor, s.mscale) / yarnMscale(factor, s.mscaleAllDim) : yarnMscale(factor);
  }
  return { invFreq, scaling };
}

/**
 * Inverse frequencies [dim/2] and the cos/sin scaling for a forward whose largest position id is `maxPosition`
 * (only dynamic NTK depends on it: beyond max_position_embeddings θ grows with the sequence; transformers keeps the
 * largest length seen so far in the module, this takes the current call's).
 */
export function ropeFrequencies(s: RopeSpec, maxPosition = 0): { invFreq: Float64Array; scaling: number } {
  switch (s.type) {
    case 'default':
      return { invFreq: defaultInvFreq(s.theta, s.dim), scaling: 1 };
    case 'linear':
      return { invFreq: defaultInvFreq(s.theta, s.dim).map((f) => f / s.factor), scaling: 1 };
    case 'dynamic': {
      const seqLen = Math.max(maxPosition + 1, s.originalMaxPositions);
      const base = s.theta * Math.pow((s.factor * seqLen) / s.originalMaxPositions - (s.factor - 1), s.dim / (s.dim - 2));
      return { invFreq: defaultInvFreq(base, s.dim), scaling: 1 };
    }
    case 'llama3':
      return { invFreq: llama3InvFreq(s), scaling: 1 };
    case 'yarn':
      return yarnInvFreq(s);
  }
}

type Raw = Record<string, unknown>;

/**
 * The rope settings of a config.json in either form: transformers 5's `rope_parameters` (θ inside), or the older
 * `rope_theta` + `rope_scaling` (`type` or `rope_type`), plus `partial_rotary_factor` (GPT-NeoX: `rotary_pct`,
 * `rotary_emb_base`) at the top level. Unknown rope types and keys are errors naming the field.
 */
export function parseRope(raw: Raw, file: string, headDim: number, maxPositions: number, defaults: { theta?: number; partialRotary?: number } = {}): RopeSpec {
  const params = raw.rope_parameters ?? null;
  const scaling = raw.rope_scaling ?? null;
  const field = params !== null ? 'rope_parameters' : 'rope_scaling';
  const r = (params ?? scaling ?? {}) as Raw;
  if (typeof r !== 'object' || Array.isArray(r)) throw new Error(`${file}: "${field}" must be an object`);
  if (['full_attention', 'sliding_attention'].some((k) => k in r)) {
    throw new Error(`${file}: "${field}" holds per-layer-type rope settings, which this model type does not use`);
  }
  const type = (r.rope_type ?? r.type ?? 'default') as string;
  if (!(ROPE_TYPES as readonly string[]).includes(type)) {
    throw new Error(`${file}: "${field}.rope_type" "${type}" is not supported (supported: ${ROPE_TYPES.join(', ')})`);
  }
  const known: Record<RopeType, string[]> = {
    default: [],
    linear: ['factor'],
    dynamic: ['factor', 'original_max_position_embeddings'],
    llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
    yarn: ['factor', 'original_max_position_embeddings', 'beta_fast', 'beta_slow', 'attention_factor', 'mscale', 'mscale_all_dim', 'truncate'],
  };
  for (const k of Object.keys(r)) {
    if (['rope_type', 'type', 'rope_theta', 'partial_rotary_factor'].includes(k) || known[type as RopeType].includes(k)) continue;
    throw new Error(`${file}: "${field}.${k}" is not a setting of rope_type "${type}" (known: ${['rope_theta', 'partial_rotary_factor', ...known[type as RopeType]].join(', ')})`);
  }
  const numField = (k: string, fallback: number | null): number | null => {
    const v = r[k];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: "${field}.${k}" must be a number`);
    return v;
  };
  const need = (k: string): number => {
    const v = numField(k, null);
    if (v === null) throw new Error(`${file}: rope_type "${type}" needs "${field}.${k}"`);
    return v;
  };
  const topNum = (k: string): number | undefined => (typeof raw[k] === 'number' ? (raw[k] as number) : undefined);
  const theta = numField('rope_theta', null) ?? topNum('rope_theta') ?? topNum('rotary_emb_base') ?? defaults.theta ?? 10000;
  const partial = numField('partial_rotary_factor', null) ?? topNum('partial_rotary_factor') ?? topNum('rotary_pct') ?? defaults.partialRotary ?? 1;
  if (!(partial > 0 && partial <= 1)) throw new Error(`${file}: partial_rotary_factor ${partial} must be in (0, 1]`);
  const dim = Math.floor(headDim * partial);
  if (dim < 2 || dim % 2) throw new Error(`${file}: rotary dimension int(${headDim} × ${partial}) = ${dim} must be even and ≥ 2`);
  const topOriginal = topNum('original_max_position_embeddings');
  const factor = type === 'default' ? 1 : type === 'yarn' ? numField('factor', null) : need('factor');
  // As transformers: a top-level original_max_position_embeddings (Phi-3's place for it) wins over the rope dict's;
  // dynamic NTK scales from max_position_embeddings.
  const original = type === 'dynamic' ? maxPositions : topOriginal ?? numField('original_max_position_embeddings', null) ?? maxPositions;
  return {
    type: type as RopeType, theta, dim, factor: factor ?? maxPositions / original, originalMaxPositions: original,
    lowFreqFactor: type === 'llama3' ? need('low_freq_factor') : 1, highFreqFactor: type === 'llama3' ? need('high_freq_factor') : 1,
    betaFast: numField('beta_fast', null) || 32, betaSlow: numField('beta_slow', null) || 1,
    attentionFactor: numField('attention_factor', null), mscale: numField('mscale', null), mscaleAllDim: numField('mscale_all_dim', null),
    truncate: r.truncate !== false,
  };
}
