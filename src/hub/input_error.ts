/**
 * The one error class for bad input files (checkpoints, configs, tokenizers, datasets): the message starts with the
 * file (and, where known, the record and field), so the user can open what is wrong. Code that reads files a user or
 * a download supplies throws this (or a subclass: DataError, SafetensorsError) for every defect of the file itself;
 * anything else escaping a reader is a bug of the reader (the fuzz suite checks exactly that).
 */
export class InputFileError extends Error {
  /** The file (or directory) at fault. */
  readonly file: string;

  /** `where` is what the message starts with (the file, or "file:line"); it defaults to the file. */
  constructor(file: string, detail: string, where: string = file) {
    super(where ? `${where}: ${detail}` : detail);
    this.name = 'InputFileError';
    this.file = file;
  }
}

/** Wraps an error thrown while reading `file` (I/O, zlib) as an InputFileError naming it and saying what failed. */
export function fileReadError(file: string, err: unknown, doing = 'cannot read the file'): InputFileError {
  if (err instanceof InputFileError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? `${e.code}: ` : '';
  return new InputFileError(file, `${doing} (${code}${e?.message ?? String(err)})`);
}
