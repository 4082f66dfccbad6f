/**
 * The backend a parity test runs on: its usual one, or the one named by RLHF_TEST_BACKEND (e.g. `native`), set up
 * as the CLIs set it up (initBackend: registration, self-test, product forms). `RLHF_TEST_BACKEND=native npx vitest
 * run test/model_parity.test.ts test/dpo_parity.test.ts …` runs the fixture suites on the native backend.
 */
import { tf } from '../../src/engine/tf.js';
import { initBackend } from '../../src/engine/backend.js';

export const TEST_BACKEND_ENV = 'RLHF_TEST_BACKEND';

export async function useTestBackend(usual: string): Promise<string> {
  const chosen = process.env[TEST_BACKEND_ENV];
  if (chosen) return initBackend(chosen, () => {});
  await tf.setBackend(usual);
  await tf.ready();
  return usual;
}
