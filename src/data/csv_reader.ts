/**
 * CSV with a header row, read as a stream through csv-parse. Each row becomes an object keyed by the header; a row
 * with a different number of fields than the header is a "ragged row": an error naming the file, the line and the
 * field, or (with skipBadRecords) skipped and reported through `onSkip`.
 */
import { Readable, pipeline } from 'node:stream';
import { parse } from 'csv-parse';
import { InputFileError } from '../hub/input_error.js';
import { DataError, type RecordLocation } from './location.js';
import type { DataRecord, LocatedRecord } from './types.js';

export interface CsvReadOptions {
  skipBadRecords?: boolean;
  onSkip?: (location: RecordLocation, reason: string) => void;
}

interface CsvParseInfo {
  lines: number;
  empty_lines: number;
  comment_lines: number;
}

/** `text` is the file's decoded text (a stream of strings or bytes); its errors end the iteration with them. */
export async function* readCsvRecords(
  file: string,
  text: Readable | AsyncIterable<string>,
  opts: CsvReadOptions = {},
): AsyncGenerator<LocatedRecord> {
  const input = text instanceof Readable ? text : Readable.from(text);
  // relax_column_count: we check row lengths ourselves so the message can name the missing or extra field.
  const parser = parse({ info: true, bom: true, relax_column_count: true, skip_empty_lines: true });
  // pipeline, not pipe: an error of the input (bad bytes, a broken .gz) destroys the parser with it, so the loop
  // below sees it instead of the process dying of an unhandled 'error' event.
  pipeline(input, parser, () => {});
  let header: string[] | undefined;
  let prevEnd = 0;
  let prevSkippedLines = 0;
  let dataRows = 0;
  try {
    for await (const item of parser as AsyncIterable<{ record: string[]; info: CsvParseInfo }>) {
      const { record, info } = item;
      // csv-parse reports the line a record ENDS on; the start is one past the previous end plus skipped blank lines.
      const skippedLines = info.empty_lines + info.comment_lines;
      const line = prevEnd + 1 + (skippedLines - prevSkippedLines);
      prevEnd = info.lines;
      prevSkippedLines = skippedLines;
      const location: RecordLocation = { file, line };
      if (!header) {
        header = record;
        continue;
      }
      dataRows++;
      if (record.length !== header.length) {
        const reason = raggedRowReason(record.length, header);
        if (!opts.skipBadRecords) throw new DataError(location, reason);
        opts.onSkip?.(location, reason);
        continue;
      }
      const value: DataRecord = {};
      header.forEach((name, i) => (value[name] = record[i]));
      yield { value, location };
    }
  } catch (err) {
    if (err instanceof InputFileError) throw err;
    const e = err as Error & { lines?: number; code?: string };
    if (e.code === 'CSV_QUOTE_NOT_CLOSED') {
      // csv-parse reports the end of the file; the quote opened in the record after the last complete one.
      const opened = prevEnd + 1;
      throw new DataError({ file, line: opened }, `invalid CSV: a quoted field opened on line ${opened} is never closed (a stray or unescaped \" inside the field? double it as "")`);
    }
    throw new DataError({ file, line: e.lines }, `invalid CSV (${e.message})`);
  } finally {
    input.destroy();
    parser.destroy();
  }
  if (!header) throw new DataError({ file }, 'empty file: no header row and no records');
  if (dataRows === 0) throw new DataError({ file }, `no records: only a header row (${header.join(', ')})`);
}

function raggedRowReason(fieldCount: number, header: string[]): string {
  const prefix = `ragged row: ${fieldCount} field(s) but the header has ${header.length} (${header.join(', ')})`;
  if (fieldCount < header.length) return `${prefix}; field "${header[fieldCount]}" is missing`;
  return `${prefix}; field ${header.length + 1} has no column in the header`;
}
