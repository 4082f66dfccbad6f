/** The fuzz suite's rule for an error thrown by a parser of untrusted files. */
import { sep } from 'node:path';
import { InputFileError } from '../../src/hub/input_error.js';

/** Why an error breaks the rules, or null when it is the project's own error naming the file (or its directory's). */
export function ruleBroken(e: unknown, path: string, dir: string): string | null {
  if (!(e instanceof InputFileError)) {
    const name = (e as Error)?.constructor?.name ?? typeof e;
    return `not an InputFileError but ${name}: ${(e as Error)?.message ?? String(e)}`;
  }
  if (!e.file) return `an InputFileError that names no file: ${e.message}`;
  if (e.file !== path && e.file !== dir && !e.file.startsWith(dir + sep)) return `names ${e.file}, not the input file ${path}: ${e.message}`;
  if (!e.message.includes(e.file)) return `the message does not name ${e.file}: ${e.message}`;
  return null;
}
