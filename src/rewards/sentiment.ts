/**
 * The demo's automatic labeler: the AFINN-165 lexicon's positivity of a text, as the `sentiment` package scores it
 * (the sum of the valences, −5…+5, of the words it knows). It stands in for the human who ranks the SFT model's
 * answers; the reward model never sees it, only the pairs it ranked.
 */
import { createRequire } from 'node:module';

interface SentimentAnalyzer {
  analyze(text: string): { score: number; comparative: number };
}

let analyzer: SentimentAnalyzer | undefined;
function get(): SentimentAnalyzer {
  if (!analyzer) {
    const Sentiment = createRequire(import.meta.url)('sentiment') as new () => SentimentAnalyzer;
    analyzer = new Sentiment();
  }
  return analyzer;
}

/** AFINN score of each text (0 for a text with no lexicon word). */
export function sentimentScores(texts: readonly string[]): number[] {
  const a = get();
  return texts.map((t) => a.analyze(t).score);
}

/** The judges a command can name with `--judge`. */
export const JUDGES = ['sentiment'] as const;
export type JudgeName = (typeof JUDGES)[number];

export function judgeScores(judge: JudgeName, texts: readonly string[]): number[] {
  switch (judge) {
    case 'sentiment':
      return sentimentScores(texts);
  }
}
