/** tfjs variable names are global to the engine; two models holding `lm_head.weight` need distinct ones. */
let counter = 0;
export function uniqueScope(prefix: string): string {
  counter += 1;
  return `${prefix}${counter}`;
}
