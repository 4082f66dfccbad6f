// What the decode kernels share (decode_attention.cc, decode_layer.cc): attention over the KV cache on raw pointers.
#pragma once

#include <napi.h>

#include <cstdint>

namespace rlhf_engine {

// The arguments of decodeAttention (see decode_attention.cc for their meaning), already checked against the arrays.
struct DecodeAttentionArgs {
  const float *q, *k, *v;
  const int32_t* positions;
  const float* invFreq;
  const int32_t* mask;
  float *keys, *values, *out;
  int64_t B, T, H, G, hs, past, cap, rot, window, qOff, qRow, kOff, kRow, vOff, vRow, headStride;
  double scale, softcap, ropeScaling;
};

void RunDecodeAttention(const DecodeAttentionArgs& a);

// Adds the whole-layer decode step and the vocabulary head (decode_layer.cc) to the addon's exports.
void AddDecodeLayerKernels(Napi::Env env, Napi::Object exports);

}  // namespace rlhf_engine
