/** f() with environment variable `name` set to `value`, the old value (or its absence) restored after. */
export function withEnv<T>(name: string, value: string, f: () => T): T {
  const before = process.env[name];
  process.env[name] = value;
  try {
    return f();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}
