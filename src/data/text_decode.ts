/**
 * Text files as they really are: bytes that must be UTF-8 (the byte-order mark optional), or UTF-16 when a BOM says
 * so. Bytes that are not valid UTF-8 (a Latin-1 or Windows-1252 export, a binary file under a text name) are an error
 * naming the file and line, never silently turned into U+FFFD replacement characters. `.gz` files are gunzipped on
 * the way, and a file that is not gzip or is cut short is an error naming it, never a bare zlib message.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { pipeline, type Readable } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';
import { InputFileError, fileReadError } from '../hub/input_error.js';
import { DataError } from './location.js';

type Encoding = 'utf-8' | 'utf-16le' | 'utf-16be';

const NEWLINE = 0x0a;

/** What to tell the user about bytes that are not UTF-8. */
function notUtf8(file: string, line: number): DataError {
  return new DataError(
    { file, line },
    'not valid UTF-8 text (Latin-1 or another legacy encoding?): convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8 in > out`',
  );
}

/** Bytes at the end of `b` that start a UTF-8 sequence the chunk does not finish (0 when it ends cleanly). */
function incompleteTailLength(b: Uint8Array): number {
  for (let k = 1; k <= Math.min(3, b.length); k++) {
    const c = b[b.length - k]!;
    if ((c & 0xc0) === 0x80) continue; // a continuation byte: keep looking for the lead
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return need > k ? k : 0;
  }
  return 0;
}

/**
 * Incremental strict decoder for one file. `write` returns the text of the bytes so far (a sequence split across
 * chunks waits for its end); `end` checks nothing is left half-written.
 */
export class StrictTextDecoder {
  private encoding: Encoding | null = null;
  private decoder: TextDecoder | null = null;
  /** Bytes held back until the BOM can be told (fewer than 3 at the start of the file). */
  private head: Uint8Array = new Uint8Array(0);
  /** UTF-8: the unfinished sequence at the end of the last chunk, and the newlines before it. */
  private pending: Uint8Array = new Uint8Array(0);
  private newlinesBefore = 0;
  /** UTF-16: newlines of the decoded text so far (for the line of an error). */
  private decodedNewlines = 0;

  constructor(private readonly file: string) {}

  write(chunk: Uint8Array): string {
    if (this.encoding === null) {
      const joined = concat(this.head, chunk);
      if (joined.length < 3) {
        this.head = joined;
        return '';
      }
      this.head = new Uint8Array(0);
      return this.decodeChunk(this.start(joined));
    }
    return this.decodeChunk(chunk);
  }

  end(): string {
    let text = '';
    if (this.encoding === null) {
      const head = this.start(this.head);
      text = this.decodeChunk(head);
    }
    try {
      text += this.decoder!.decode();
    } catch {
      if (this.encoding === 'utf-8') throw notUtf8(this.file, this.newlinesBefore + 1);
      throw new DataError({ file: this.file, line: this.decodedNewlines + 1 }, `not valid ${this.encoding!.toUpperCase()} text: the file ends inside a character`);
    }
    return text;
  }

  /** Reads the BOM (if any) and returns the bytes after it. */
  private start(bytes: Uint8Array): Uint8Array {
    let skip = 0;
    if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
      this.encoding = 'utf-8';
      skip = 3;
    } else if (bytes[0] === 0xff && bytes[1] === 0xfe) {
      this.encoding = 'utf-16le';
      skip = 2;
    } else if (bytes[0] === 0xfe && bytes[1] === 0xff) {
      this.encoding = 'utf-16be';
      skip = 2;
    } else {
      this.encoding = 'utf-8';
    }
    // ignoreBOM: the BOM is stripped here, once; a second one inside the text is kept as text.
    this.decoder = new TextDecoder(this.encoding, { fatal: true, ignoreBOM: true });
    return bytes.subarray(skip);
  }

  private decodeChunk(chunk: Uint8Array): string {
    if (chunk.length === 0) return '';
    let text: string;
    try {
      text = this.decoder!.decode(chunk, { stream: true });
    } catch {
      if (this.encoding === 'utf-8') throw notUtf8(this.file, this.locateUtf8Error(chunk));
      throw new DataError({ file: this.file, line: this.decodedNewlines + 1 }, `not valid ${this.encoding!.toUpperCase()} text (an unpaired surrogate)`);
    }
    if (this.encoding === 'utf-8') {
      this.newlinesBefore += countNewlineBytes(chunk);
      this.pending = chunk.subarray(chunk.length - incompleteTailLength(chunk)).slice();
    } else {
      for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === NEWLINE) this.decodedNewlines++;
    }
    return text;
  }

  /** The line of the first invalid byte of `chunk` (UTF-8 never has a newline byte inside a character). */
  private locateUtf8Error(chunk: Uint8Array): number {
    const bytes = concat(this.pending, chunk);
    let line = this.newlinesBefore + 1;
    let start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i < bytes.length && bytes[i] !== NEWLINE) continue;
      let piece = bytes.subarray(start, i);
      // The last piece may end in a character the next chunk finishes.
      if (i === bytes.length) piece = piece.subarray(0, piece.length - incompleteTailLength(piece));
      if (!isUtf8(piece)) return line;
      line++;
      start = i + 1;
    }
    return this.newlinesBefore + 1;
  }
}

function countNewlineBytes(b: Uint8Array): number {
  let n = 0;
  for (let i = b.indexOf(NEWLINE); i >= 0; i = b.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A zlib failure, said in words and naming the file. */
export function gzipError(file: string, err: unknown): InputFileError {
  if (err instanceof InputFileError) return err;
  const e = err as NodeJS.ErrnoException;
  const msg = e?.message ?? String(err);
  if (e?.code === 'Z_BUF_ERROR' || /unexpected end of file/i.test(msg)) {
    return new InputFileError(file, `truncated gzip file: the compressed data ends early (${msg}); download or copy it again`);
  }
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) {
    return new InputFileError(file, `not a valid gzip file (${msg}); is it really compressed? rename it without .gz if not`);
  }
  return fileReadError(file, err);
}

/** The whole text of a file (gunzipped when it ends in .gz), strictly decoded, BOM removed. */
export function readTextFile(file: string): string {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw fileReadError(file, e);
  }
  if (file.endsWith('.gz')) bytes = gunzipBytes(file, bytes);
  const decoder = new StrictTextDecoder(file);
  return decoder.write(bytes) + decoder.end();
}

/** gunzip with errors that name the file. */
export function gunzipBytes(file: string, bytes: Uint8Array): Buffer {
  try {
    return gunzipSync(bytes);
  } catch (e) {
    throw gzipError(file, e);
  }
}

/** The raw byte stream of a file, gunzipped when it ends in .gz; every failure surfaces on the returned stream. */
function byteStream(file: string): Readable {
  const raw = createReadStream(file);
  if (!file.endsWith('.gz')) return raw;
  // pipeline (not pipe) hands an error of either stream to the other, so a missing file or bad gzip data reaches
  // the reader instead of crashing the process with an unhandled 'error' event.
  return pipeline(raw, createGunzip(), () => {});
}

/** The decoded text of a file, chunk by chunk (for streaming readers: never the whole file in memory). */
export async function* textChunks(file: string): AsyncGenerator<string> {
  const stream = byteStream(file);
  const decoder = new StrictTextDecoder(file);
  try {
    for await (const chunk of stream) {
      const text = decoder.write(chunk as Buffer);
      if (text) yield text;
    }
  } catch (e) {
    if (e instanceof InputFileError) throw e;
    throw file.endsWith('.gz') ? gzipError(file, e) : fileReadError(file, e);
  } finally {
    stream.destroy();
  }
  const rest = decoder.end();
  if (rest) yield rest;
}

/** Lines of a text file, numbered from 1 ("\r\n" and "\n" both end a line). */
export async function* textLines(file: string): AsyncGenerator<{ line: number; text: string }> {
  let pieces: string[] = []; // the current line so far (it may span many chunks)
  let line = 0;
  const take = (): { line: number; text: string } => {
    const text = pieces.join('');
    pieces = [];
    return { line: ++line, text: text.endsWith('\r') ? text.slice(0, -1) : text };
  };
  for await (const chunk of textChunks(file)) {
    let start = 0;
    for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', start)) {
      pieces.push(chunk.slice(start, i));
      yield take();
      start = i + 1;
    }
    if (start < chunk.length) pieces.push(chunk.slice(start));
  }
  if (pieces.length > 0) yield take();
}
