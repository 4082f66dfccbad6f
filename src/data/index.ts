/** The data layer: read files, normalize formats, render templates, tokenize, cache, batch. */
export * from './location.js';
export * from './types.js';
export * from './readers.js';
export * from './parquet_reader.js';
export * from './dataset_splits.js';
export * from './formats.js';
export * from './preference.js';
export * from './pair_tokens.js';
export * from './prompts.js';
export * from './templates/index.js';
export * from './sft_samples.js';
export * from './token_cache.js';
export * from './pretrain_data.js';
export * from './split.js';
export * from './batching.js';
