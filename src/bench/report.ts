/** The benchmark's output: an aligned table for people, one JSON object (last stdout line, or --json) for tools. */
import { writeFileSync } from 'node:fs';

export interface Row {
  metric: string;
  value: number;
  unit: string;
  note?: string;
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(a >= 1 ? 2 : 3);
}

export function formatTable(title: string, rows: Row[]): string {
  const w = Math.max(6, ...rows.map((r) => r.metric.length));
  const vw = Math.max(5, ...rows.map((r) => fmt(r.value).length));
  const uw = Math.max(4, ...rows.map((r) => r.unit.length));
  const out = [title, `${'metric'.padEnd(w)}  ${'value'.padStart(vw)}  ${'unit'.padEnd(uw)}  note`];
  out.push('-'.repeat(w + vw + uw + 12));
  for (const r of rows) out.push(`${r.metric.padEnd(w)}  ${fmt(r.value).padStart(vw)}  ${r.unit.padEnd(uw)}  ${r.note ?? ''}`.trimEnd());
  return out.join('\n');
}

/** Prints the JSON as the last stdout line and, when asked, writes it to a file too. */
export function emitJson(obj: unknown, file?: string): void {
  const text = JSON.stringify(obj);
  if (file) writeFileSync(file, text + '\n');
  process.stdout.write(text + '\n');
}
