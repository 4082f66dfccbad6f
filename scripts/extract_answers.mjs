// Prints the `output` field of alpaca-format JSON / JSONL files as plain text, one answer per paragraph: the
// instruction-answer prose of the default model's pretraining corpus.
import { readFileSync } from 'node:fs';

for (const file of process.argv.slice(2)) {
  const text = readFileSync(file, 'utf8').trim();
  const records = text.startsWith('[') ? JSON.parse(text) : text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  for (const r of records) if (typeof r.output === 'string' && r.output.trim()) process.stdout.write(`${r.output.trim()}\n\n`);
}
