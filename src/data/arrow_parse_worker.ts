/**
 * The code of the worker thread that parses Arrow IPC bytes into plain rows. apache-arrow can loop (and grow without
 * bound) on a corrupt file, so parsing runs in a worker, which the reader can give up on after a time limit without
 * losing the process (see arrow_reader.ts). The worker is plain CommonJS source, run with `eval`, so it starts the
 * same from TypeScript sources and from the built package, with no loader, and loads only apache-arrow.
 *
 * Rows become plain JSON-like values: lists arrays, struct rows objects, int64 numbers (or strings when too large),
 * dates ISO strings.
 */
export const ARROW_WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { tableFromIPC, Vector } = require(workerData.arrowPath);

function toPlain(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Vector) return Array.from(value, toPlain);
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value, toPlain);
  if (typeof value === 'object') {
    // StructRow and MapRow are proxies; toJSON gives their fields as an ordinary object.
    const source = typeof value.toJSON === 'function' ? value.toJSON() : value;
    if (Array.isArray(source)) return source.map(toPlain);
    const out = {};
    for (const [k, v] of Object.entries(source)) out[k] = toPlain(v);
    return out;
  }
  return value;
}

parentPort.on('message', ({ id, bytes }) => {
  let reply;
  try {
    const table = tableFromIPC(bytes);
    const rows = [];
    for (let i = 0; i < table.numRows; i++) rows.push(toPlain(table.get(i)));
    reply = { id, rows };
  } catch (e) {
    reply = { id, error: (e && e.message) || String(e) };
  }
  try {
    parentPort.postMessage(reply);
  } catch (e) {
    parentPort.postMessage({ id, error: 'rows cannot be passed back (' + e.message + ')' });
  }
});
// Loaded: the reader starts its time limit from here, so a slow start never counts against a file.
parentPort.postMessage({ ready: true });
`;
