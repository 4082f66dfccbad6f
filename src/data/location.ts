/**
 * Where a record came from, so that every data error can say "file:line" (JSONL, CSV) or "file[index]" (JSON arrays,
 * Arrow tables) and the user can open the offending record directly.
 */
import { InputFileError } from '../hub/input_error.js';

export interface RecordLocation {
  file: string;
  /** 1-based line number (JSONL, CSV: the line the record starts on). */
  line?: number;
  /** 0-based position in a JSON array or Arrow table. */
  index?: number;
}

export function formatLocation(loc: RecordLocation): string {
  if (loc.line !== undefined) return `${loc.file}:${loc.line}`;
  if (loc.index !== undefined) return `${loc.file}[${loc.index}]`;
  return loc.file;
}

/** A data problem tied to a record: the message starts with the location, e.g. `a.jsonl:7: missing field "output"`. */
export class DataError extends InputFileError {
  readonly location: RecordLocation | undefined;

  constructor(location: RecordLocation | undefined, detail: string) {
    super(location?.file ?? '', detail, location ? formatLocation(location) : '');
    this.name = 'DataError';
    this.location = location;
  }
}
