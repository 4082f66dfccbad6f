/**
 * CSV with a header row, read as a stream through csv-parse. Each row becomes an object keyed by the header; a row
 * with a different number of fields than the header is a "ragged row": an error naming the file, the line and the
 * field, or (with skipBadRecords) skipped and reported through `onSkip`.
 */
import type { Readable } from 'node:stream';
import { parse } from 'csv-parse';
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

export async function* readCsvRecords(
  file: string,
  input: Readable,
  opts: CsvReadOptions = {},
): AsyncGenerator<LocatedRecord> {
  // relax_column_count: we check row lengths ourselves so the message can name the missing or extra field.
  const parser = input.pipe(parse({ info: true, bom: true, relax_column_count: true, skip_empty_lines: true }));
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
    if (err instanceof DataError) throw err;
    const e = err as Error & { lines?: number };
    throw new DataError({ file, line: e.lines }, `invalid CSV (${e.message})`);
  } finally {
    input.destroy();
  }
  if (!header) throw new DataError({ file }, 'empty file: no header row and no records');
  if (dataRows === 0) throw new DataError({ file }, `no records: only a header row (${header.join(', ')})`);
}

function raggedRowReason(fieldCount: number, header: string[]): string {
  const prefix = `ragged row: ${fieldCount} field(s) but the header has ${header.length} (${header.join(', ')})`;
  if (fieldCount < header.length) return `${prefix}; field "${header[fieldCount]}" is missing`;
  return `${prefix}; field ${header.length + 1} has no column in the header`;
}
