/**
 * A character-level tokenizer.json (nanoGPT's shakespeare_char, in HF's format): one token per distinct character
 * of a corpus, so tiny models can be trained and the result loaded by `Tokenizer.fromJson` and by HF alike.
 *
 * How it splits into characters: a BPE model with no merges. BPE starts from single characters (Unicode code points,
 * in both HF's Rust `tokenizers` and `@huggingface/tokenizers`) and, with nothing to merge, stops there; characters
 * outside the vocabulary become `<unk>`. No normalizer and no pre-tokenizer, so spaces and newlines are ordinary
 * tokens, and a `Fuse` decoder joins the pieces back without separators.
 *
 * Ids: the corpus characters sorted by code point get 0..n-1 (as in nanoGPT), then `<unk>`, then `<|endoftext|>`,
 * then any extra special tokens.
 */
import type { TokenizerJson } from './tokenizer.js';

export interface CharTokenizerOptions {
  /** Token for characters not in the corpus. Default "<unk>". */
  unkToken?: string;
  /** End-of-text token (also bos, as in GPT-2). Default "<|endoftext|>". */
  endOfTextToken?: string;
  /** More special tokens, e.g. chat markers; each is matched whole in the text. */
  additionalSpecialTokens?: string[];
}

export function buildCharTokenizerJson(corpus: string, opts: CharTokenizerOptions = {}): TokenizerJson {
  const unkToken = opts.unkToken ?? '<unk>';
  const endOfText = opts.endOfTextToken ?? '<|endoftext|>';
  const specials = [unkToken, endOfText, ...(opts.additionalSpecialTokens ?? [])];
  const seen = new Set<string>();
  for (const special of specials) {
    if (special.length === 0) throw new Error('buildCharTokenizerJson: special tokens must be non-empty strings');
    if (seen.has(special)) throw new Error(`buildCharTokenizerJson: special token ${JSON.stringify(special)} repeated`);
    seen.add(special);
  }

  // Array.from splits by code point, so a character outside the BMP (emoji, rare CJK) is one token, not two halves.
  const chars = [...new Set(Array.from(corpus))].sort(compareCodePoints);
  const vocab: Record<string, number> = {};
  chars.forEach((ch, i) => (vocab[ch] = i));
  for (const special of specials) {
    if (vocab[special] !== undefined) {
      throw new Error(`buildCharTokenizerJson: special token ${JSON.stringify(special)} is also a corpus character`);
    }
  }
  const addedTokens = specials.map((content, i) => {
    const id = chars.length + i;
    vocab[content] = id; // BPE needs its unk token in the vocabulary; HF keeps added tokens there too
    return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  });

  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unkToken,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

function compareCodePoints(a: string, b: string): number {
  return (a.codePointAt(0) ?? 0) - (b.codePointAt(0) ?? 0);
}
