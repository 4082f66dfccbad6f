/**
 * The coefficient β of the per-token KL penalty −β·KL(π ‖ π_ref). Fixed by default; with a target KL it adapts as in
 * Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences", section 2.2):
 *   e = clip(KL / target − 1, −0.2, 0.2),   β ← β · (1 + e · n / horizon)
 * where n is the number of sequences the KL was measured on.
 */
export interface KlController {
  /** The current β. */
  readonly value: number;
  /** Feeds the KL measured on `nSequences` rollouts (summed over tokens, averaged over sequences). */
  update(currentKl: number, nSequences: number): void;
  /** For checkpoints. */
  state(): { value: number };
  restore(s: { value: number }): void;
}

export class FixedKlController implements KlController {
  constructor(public value: number) {}
  update(): void {}
  state(): { value: number } {
    return { value: this.value };
  }
  restore(s: { value: number }): void {
    this.value = s.value;
  }
}

export class AdaptiveKlController implements KlController {
  constructor(public value: number, readonly target: number, readonly horizon: number) {
    if (!(target > 0)) throw new Error(`adaptive KL: target must be > 0, got ${target}`);
    if (!(horizon > 0)) throw new Error(`adaptive KL: horizon must be > 0, got ${horizon}`);
  }
  update(currentKl: number, nSequences: number): void {
    if (!Number.isFinite(currentKl)) return;
    const error = Math.min(0.2, Math.max(-0.2, currentKl / this.target - 1));
    this.value *= 1 + (error * nSequences) / this.horizon;
  }
  state(): { value: number } {
    return { value: this.value };
  }
  restore(s: { value: number }): void {
    this.value = s.value;
  }
}

export function createKlController(klCoef: number, klTarget: number | null, horizon: number): KlController {
  return klTarget === null ? new FixedKlController(klCoef) : new AdaptiveKlController(klCoef, klTarget, horizon);
}
