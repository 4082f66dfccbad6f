/**
 * Inverted-dropout masks: 0 where dropped, 1/(1 − rate) where kept, exactly the mask tf.dropout(ones, rate, _, seed)
 * makes. tfjs draws its uniforms in JavaScript (seedrandom's Alea, one call per element: at shakespeare-char's
 * shape that was a sixth of a training step); on a backend with the fused dropout kernel the generator's state is
 * set up here from the seed, as tfjs sets it up, and the native kernel steps it, so the same seed drops the same
 * elements on every backend.
 */
import { createRequire } from 'node:module';
import { tf, type Tensor } from '../../engine/tf.js';
import { FUSED, fusedKernel } from '../../engine/native_fused.js';

type Alea = (seed: string, opts: { state: true }) => { state(): { c: number; s0: number; s1: number; s2: number } };

let alea: Alea | null | undefined;

/** seedrandom's Alea, the generator tfjs-core uses (its dependency), or null when it cannot be loaded. */
function aleaFactory(): Alea | null {
  if (alea !== undefined) return alea;
  try {
    const fromCore = createRequire(createRequire(import.meta.url).resolve('@tensorflow/tfjs-core'));
    alea = (fromCore('seedrandom') as { alea: Alea }).alea;
  } catch {
    alea = null;
  }
  return alea;
}

/** The mask for a tensor of `shape`: tf.dropout on ones with this rate (0 < rate < 1) and seed. */
export function dropoutMask(shape: number[], rate: number, seed: number): Tensor {
  const make = aleaFactory();
  if (make && fusedKernel(FUSED.dropoutMask)) {
    const s = make(seed.toString(), { state: true }).state();
    return tf.engine().runKernel(FUSED.dropoutMask, {}, { shape, keepProb: 1 - rate, state: [s.c, s.s0, s.s1, s.s2] }) as Tensor;
  }
  return tf.tidy(() => tf.dropout(tf.ones(shape), rate, undefined, seed));
}
