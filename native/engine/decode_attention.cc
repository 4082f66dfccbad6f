// Inference attention over a preallocated KV cache, in one call per layer (src/engine/native_decode.ts):
//
//   decodeAttention(q, k, v, positions, invFreq, mask, keyCache, valueCache, out, dims, reals)
//     dims  = [B, T, H, Hkv, hs, past, capacity, rotaryDim, window, qOffset, qRow, kOffset, kRow, vOffset, vRow, headStride]
//     reals = [scale, softcap (0: none), rotaryScaling]; with softcap c the scores are c·tanh(q·k·scale / c)
//
// For T new positions after `past` cached ones: rotary embedding (HF's halves layout, on the first rotaryDim of
// each head, from the int32 position ids [B, T] and the inverse frequencies [rotaryDim / 2]) of q and k; k and v
// written into the caches at slots past … past + T − 1; then each query head attends to the cached keys of its kv
// head (grouped heads: h / (H / Hkv)), causal, key j visible when mask[b, j] ≠ 0 (mask [B, capacity] int32) and,
// with a window W > 0, past + t − j < W. Output [B, T, H, hs], the heads side by side as the o-projection reads them.
//
// q, k and v are read in place from the projections' output: head h of row (b, t) starts at
// offset + (b·T + t)·row + h·headStride (separate projections, a fused q|k|v output, or GPT-NeoX's per-head q, k, v).
// Caches: keys [B, Hkv, hs, capacity] (transposed, so the scores of one query are a loop over contiguous keys),
// values [B, Hkv, capacity, hs]. A query with no visible key averages every value up to past + T − 1, as softmax
// over a row masked everywhere by a finite bias does in the reference path. The thread pool and FastExp are the
// engine's (engine_shared.h).
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine_shared.h"

namespace {

struct Floats {
  float* data;
  size_t n;
};

struct Ints32 {
  int32_t* data;
  size_t n;
};

[[noreturn]] void Fail(Napi::Env env, const std::string& what) {
  throw Napi::RangeError::New(env, "engine.decodeAttention: " + what);
}

Floats FloatArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.decodeAttention: ") + name + " must be a Float32Array");
  }
  auto t = info[i].As<Napi::Float32Array>();
  return Floats{t.Data(), t.ElementLength()};
}

Ints32 IntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.decodeAttention: ") + name + " must be an Int32Array");
  }
  auto t = info[i].As<Napi::Int32Array>();
  return Ints32{t.Data(), t.ElementLength()};
}

std::vector<double> Numbers(const Napi::CallbackInfo& info, size_t i, size_t count, const char* name) {
  if (!info[i].IsArray() || info[i].As<Napi::Array>().Length() != count) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.decodeAttention: ") + name + " must be an array of " + std::to_string(count) + " numbers");
  }
  auto a = info[i].As<Napi::Array>();
  std::vector<double> out(count);
  for (uint32_t k = 0; k < count; k++) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("engine.decodeAttention: ") + name + " must hold numbers");
    out[k] = v.As<Napi::Number>().DoubleValue();
  }
  return out;
}

// cos/sin of position·invFreq for the d/2 frequencies, times `scaling`: shared by every head of one position.
void RotaryTable(int32_t position, const float* invFreq, int64_t half, float scaling, float* cos, float* sin) {
  for (int64_t i = 0; i < half; i++) {
    // float32 product then cos/sin in double, rounded: what the reference path's float32 kernels compute.
    const float f = static_cast<float>(position) * invFreq[i];
    cos[i] = static_cast<float>(std::cos(static_cast<double>(f))) * scaling;
    sin[i] = static_cast<float>(std::sin(static_cast<double>(f))) * scaling;
  }
}

// x (rotated in place on its first 2·half entries): x·cos + rotate_half(x)·sin, HF's halves layout.
void Rotate(float* __restrict x, int64_t half, const float* __restrict cos, const float* __restrict sin) {
  for (int64_t i = 0; i < half; i++) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] + (-b) * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

// The two product loops are built for AVX2 + FMA as well as the baseline, picked at load time by the CPU (GCC on
// x86-64 with glibc; elsewhere the baseline alone).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define RLHF_VECTOR_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define RLHF_VECTOR_CLONES
#endif

// sc[j] = q · kt[:, j] for j < n (kt: hs rows of `stride` floats): 16 keys at a time held in registers while the
// hs products are summed, in order, so each key value is loaded once.
RLHF_VECTOR_CLONES void Scores(const float* __restrict q, const float* __restrict kt, int64_t stride, int64_t hs, int64_t n, float* __restrict sc) {
  constexpr int kBlock = 16;
  int64_t j = 0;
  for (; j + kBlock <= n; j += kBlock) {
    float acc[kBlock] = {};
    for (int64_t i = 0; i < hs; i++) {
      const float qi = q[i];
      const float* kr = kt + i * stride + j;
      for (int b = 0; b < kBlock; b++) acc[b] += qi * kr[b];
    }
    for (int b = 0; b < kBlock; b++) sc[j + b] = acc[b];
  }
  for (; j < n; j++) {
    float a = 0.f;
    for (int64_t i = 0; i < hs; i++) a += q[i] * kt[i * stride + j];
    sc[j] = a;
  }
}

// out[d] = Σ_j w[j]·v[j, d] for d < hs (v: n rows of hs floats), 16 dimensions at a time in registers.
RLHF_VECTOR_CLONES void Mix(const float* __restrict w, const float* __restrict v, int64_t hs, int64_t n, float* __restrict out) {
  constexpr int kBlock = 16;
  int64_t d = 0;
  for (; d + kBlock <= hs; d += kBlock) {
    float acc[kBlock] = {};
    for (int64_t j = 0; j < n; j++) {
      const float wj = w[j];
      const float* vr = v + j * hs + d;
      for (int b = 0; b < kBlock; b++) acc[b] += wj * vr[b];
    }
    for (int b = 0; b < kBlock; b++) out[d + b] = acc[b];
  }
  for (; d < hs; d++) {
    float a = 0.f;
    for (int64_t j = 0; j < n; j++) a += w[j] * v[j * hs + d];
    out[d] = a;
  }
}

Napi::Value DecodeAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 11) Fail(env, "expects 11 arguments");
  const Floats q = FloatArg(info, 0, "q"), k = FloatArg(info, 1, "k"), v = FloatArg(info, 2, "v");
  const Ints32 positions = IntArg(info, 3, "positions");
  const Floats invFreq = FloatArg(info, 4, "invFreq");
  const Ints32 mask = IntArg(info, 5, "mask");
  const Floats keys = FloatArg(info, 6, "keyCache"), values = FloatArg(info, 7, "valueCache"), out = FloatArg(info, 8, "out");
  const std::vector<double> d = Numbers(info, 9, 16, "dims");
  const std::vector<double> r = Numbers(info, 10, 3, "reals");
  for (double x : d) {
    if (!(x >= 0) || x != std::floor(x) || x > 1e15) Fail(env, "dims must be non-negative integers");
  }
  const int64_t B = d[0], T = d[1], H = d[2], G = d[3], hs = d[4], past = d[5], cap = d[6], rot = d[7], window = d[8];
  const int64_t qOff = d[9], qRow = d[10], kOff = d[11], kRow = d[12], vOff = d[13], vRow = d[14], headStride = d[15];
  const float softcap = static_cast<float>(r[1]), ropeScaling = static_cast<float>(r[2]);
  // As the reference path: one float32 factor scale / c inside the tanh, or scale alone.
  const float scale = static_cast<float>(r[1] > 0 ? r[0] / r[1] : r[0]);
  if (G == 0 || H % G != 0) Fail(env, "query heads must be a multiple of kv heads");
  if (past + T > cap) Fail(env, "past + T = " + std::to_string(past + T) + " exceeds the cache capacity " + std::to_string(cap));
  if (rot > hs || rot % 2 != 0 || invFreq.n < static_cast<size_t>(rot / 2)) Fail(env, "rotary dims must be even, at most hs, with rotaryDim / 2 frequencies");
  if (B * T == 0) return env.Undefined();
  // The last element each strided read touches must lie inside its array.
  auto reach = [&](int64_t off, int64_t row, int64_t heads) { return off + (B * T - 1) * row + (heads - 1) * headStride + hs; };
  if (static_cast<size_t>(reach(qOff, qRow, H)) > q.n) Fail(env, "q is shorter than its offsets and strides imply");
  if (static_cast<size_t>(reach(kOff, kRow, G)) > k.n) Fail(env, "k is shorter than its offsets and strides imply");
  if (static_cast<size_t>(reach(vOff, vRow, G)) > v.n) Fail(env, "v is shorter than its offsets and strides imply");
  if (positions.n < static_cast<size_t>(B * T)) Fail(env, "positions needs B·T entries");
  if (mask.n < static_cast<size_t>(B * cap)) Fail(env, "mask needs B·capacity entries");
  if (keys.n < static_cast<size_t>(B * G * hs * cap) || values.n < static_cast<size_t>(B * G * cap * hs)) Fail(env, "a cache is smaller than B·Hkv·hs·capacity");
  if (out.n < static_cast<size_t>(B * T * H * hs)) Fail(env, "out needs B·T·H·hs entries");

  const int64_t rep = H / G;
  // 1. rotary q into `out` (the attention below reads each query row before writing it back), k and v into the caches.
  rlhf_engine::ParallelFor(B * T, 16, [&](int64_t s, int64_t e) {
    std::vector<float> row(hs), cos(rot / 2), sin(rot / 2);
    for (int64_t bt = s; bt < e; bt++) {
      const int64_t b = bt / T, t = bt % T, slot = past + t;
      if (rot) RotaryTable(positions.data[bt], invFreq.data, rot / 2, ropeScaling, cos.data(), sin.data());
      for (int64_t h = 0; h < H; h++) {
        float* o = out.data + (bt * H + h) * hs;
        std::copy_n(q.data + qOff + bt * qRow + h * headStride, hs, o);
        if (rot) Rotate(o, rot / 2, cos.data(), sin.data());
      }
      for (int64_t g = 0; g < G; g++) {
        std::copy_n(k.data + kOff + bt * kRow + g * headStride, hs, row.data());
        if (rot) Rotate(row.data(), rot / 2, cos.data(), sin.data());
        float* kc = keys.data + (b * G + g) * hs * cap;
        for (int64_t i = 0; i < hs; i++) kc[i * cap + slot] = row[i];
        std::copy_n(v.data + vOff + bt * vRow + g * headStride, hs, values.data + ((b * G + g) * cap + slot) * hs);
      }
    }
  });

  // 2. per (b, kv head): its rep·T query rows against the keys 0 … past + t.
  const int64_t S = past + T;
  rlhf_engine::ParallelFor(B * G, 1, [&](int64_t s, int64_t e) {
    std::vector<float> p(S), qrow(hs), acc(hs);
    for (int64_t bg = s; bg < e; bg++) {
      const int64_t b = bg / G, g = bg % G;
      const float* kc = keys.data + bg * hs * cap;
      const float* vc = values.data + bg * cap * hs;
      const int32_t* m = mask.data + b * cap;
      for (int64_t t = 0; t < T; t++) {
        const int64_t last = past + t;  // the query's own slot
        const int64_t first = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
        for (int64_t hr = 0; hr < rep; hr++) {
          float* o = out.data + ((b * T + t) * H + g * rep + hr) * hs;
          std::copy_n(o, hs, qrow.data());
          // scores over the visible slots [first, last]
          float* sc = p.data() + first;
          const int64_t n = last - first + 1;
          Scores(qrow.data(), kc + first, cap, hs, n, sc);
          float max = -INFINITY;
          bool any = false;
          for (int64_t j = 0; j < n; j++) {
            const float x = softcap > 0 ? std::tanh(sc[j] * scale) * softcap : sc[j] * scale;
            sc[j] = x;
            if (m[first + j] != 0) {
              any = true;
              if (x > max) max = x;
            }
          }
          if (any) {
            // As the engine's softmax: exponentials, their sum in double, one reciprocal.
            for (int64_t j = 0; j < n; j++) sc[j] = m[first + j] != 0 ? rlhf_engine::FastExp(sc[j] - max) : 0.f;
            const double sum = rlhf_engine::SumToDouble(sc, n);
            const float inv = static_cast<float>(1.0 / sum);
            for (int64_t j = 0; j < n; j++) sc[j] *= inv;
            Mix(sc, vc + first * hs, hs, n, acc.data());
          } else {
            std::fill_n(p.data(), S, 1.f / static_cast<float>(S));
            Mix(p.data(), vc, hs, S, acc.data());
          }
          std::copy_n(acc.data(), hs, o);
        }
      }
    }
  });
  return env.Undefined();
}

}  // namespace

void rlhf_engine::AddDecodeKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeAttention", Napi::Function::New(env, DecodeAttention));
}
