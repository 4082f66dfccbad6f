/** HTML escaping for everything the report prints: metric names, paths, and model output (which may hold markup). */

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

export function unescapeHtml(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|#39);/g, (_, name: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[name]!);
}

/** A number in `digits` significant digits, without trailing zeros; '–' for a missing one. */
export function formatNumber(value: number | undefined | null, digits = 4): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return '–';
  return String(Number(value.toPrecision(digits)));
}

/**
 * A score with `decimals` places, trailing zeros dropped (−1.995 stays −1.995, where 3 significant digits would
 * round it to −2): what the printed summary shows, so the report reads the same numbers.
 */
export function formatDecimals(value: number | undefined | null, decimals = 3): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return '–';
  return String(Number(value.toFixed(decimals)));
}

/** A signed number (`+1.1`, `−0.3`) for differences. */
export function formatSigned(value: number | undefined | null, digits = 3): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return '–';
  const text = formatNumber(Math.abs(value), digits);
  return value > 0 ? `+${text}` : value < 0 ? `−${text}` : text;
}

/** Seconds as `42 s`, `3 min 20 s`, `1 h 5 min`. */
export function formatSeconds(seconds: number | undefined | null): string {
  if (seconds === undefined || seconds === null || !Number.isFinite(seconds)) return '–';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 === 0 ? `${s / 60} min` : `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
