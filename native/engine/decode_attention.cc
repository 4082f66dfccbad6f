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

#include "decode_shared.h"
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

// sc[r][j] = q[r] · kt[:, j] for j < n and NQ query rows (kt: hs rows of `stride` floats): 16 keys at a time held
// in registers for every row while the hs products are summed, in order, so each key value is loaded once for NQ
// rows and the NQ·2 independent sums hide the FMA latency that one row's two would wait on. `room` (≥ n): keys
// readable from kt (up to the cache's capacity); a last partial block is computed whole when it fits, its extra
// scores (slots no query sees) written to sc and ignored, rather than key by key with strided loads.
template <int NQ>
inline __attribute__((always_inline)) void ScoresBody(const float* const* q, const float* __restrict kt, int64_t stride, int64_t hs, int64_t n, int64_t room, float* const* sc) {
  constexpr int kBlock = 16;
  const int64_t blocked = std::min(room, (n + kBlock - 1) / kBlock * kBlock);
  int64_t j = 0;
  for (; j + kBlock <= blocked; j += kBlock) {
    float acc[NQ][kBlock] = {};
    for (int64_t i = 0; i < hs; i++) {
      const float* kr = kt + i * stride + j;
      for (int r = 0; r < NQ; r++) {
        const float qi = q[r][i];
        for (int b = 0; b < kBlock; b++) acc[r][b] += qi * kr[b];
      }
    }
    for (int r = 0; r < NQ; r++) {
      for (int b = 0; b < kBlock; b++) sc[r][j + b] = acc[r][b];
    }
  }
  for (; j < n; j++) {
    for (int r = 0; r < NQ; r++) {
      float a = 0.f;
      for (int64_t i = 0; i < hs; i++) a += q[r][i] * kt[i * stride + j];
      sc[r][j] = a;
    }
  }
}

constexpr int kQueryGroup = 4;  // query rows scored together (Scores1 … Scores4)
RLHF_VECTOR_CLONES void Scores1(const float* const* q, const float* kt, int64_t stride, int64_t hs, int64_t n, int64_t room, float* const* sc) { ScoresBody<1>(q, kt, stride, hs, n, room, sc); }
RLHF_VECTOR_CLONES void Scores2(const float* const* q, const float* kt, int64_t stride, int64_t hs, int64_t n, int64_t room, float* const* sc) { ScoresBody<2>(q, kt, stride, hs, n, room, sc); }
RLHF_VECTOR_CLONES void Scores3(const float* const* q, const float* kt, int64_t stride, int64_t hs, int64_t n, int64_t room, float* const* sc) { ScoresBody<3>(q, kt, stride, hs, n, room, sc); }
RLHF_VECTOR_CLONES void Scores4(const float* const* q, const float* kt, int64_t stride, int64_t hs, int64_t n, int64_t room, float* const* sc) { ScoresBody<4>(q, kt, stride, hs, n, room, sc); }

void Scores(int nq, const float* const* q, const float* kt, int64_t stride, int64_t hs, int64_t n, int64_t room, float* const* sc) {
  switch (nq) {
    case 1: return Scores1(q, kt, stride, hs, n, room, sc);
    case 2: return Scores2(q, kt, stride, hs, n, room, sc);
    case 3: return Scores3(q, kt, stride, hs, n, room, sc);
    default: return Scores4(q, kt, stride, hs, n, room, sc);
  }
}

// out[d] = Σ_j w[j]·v[j, d] for d < hs (v: n rows of hs floats), 64 or 16 dimensions at a time in registers.
// A 64-wide block first: its eight vector sums are independent, where a 16-wide block's two wait on the FMA latency.
RLHF_VECTOR_CLONES void Mix(const float* __restrict w, const float* __restrict v, int64_t hs, int64_t n, float* __restrict out) {
  constexpr int kWide = 64;
  int64_t d = 0;
  for (; d + kWide <= hs; d += kWide) {
    float acc[kWide] = {};
    for (int64_t j = 0; j < n; j++) {
      const float wj = w[j];
      const float* vr = v + j * hs + d;
      for (int b = 0; b < kWide; b++) acc[b] += wj * vr[b];
    }
    for (int b = 0; b < kWide; b++) out[d + b] = acc[b];
  }
  constexpr int kBlock = 16;
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

  rlhf_engine::RunDecodeAttention({q.data, k.data, v.data, positions.data, invFreq.data, mask.data, keys.data, values.data, out.data,
                                   B, T, H, G, hs, past, cap, rot, window, qOff, qRow, kOff, kRow, vOff, vRow, headStride, r[0], r[1], r[2]});
  return env.Undefined();
}

}  // namespace

void rlhf_engine::RunDecodeAttention(const DecodeAttentionArgs& a) {
  const int64_t B = a.B, T = a.T, H = a.H, G = a.G, hs = a.hs, past = a.past, cap = a.cap, rot = a.rot, window = a.window;
  const int64_t qOff = a.qOff, qRow = a.qRow, kOff = a.kOff, kRow = a.kRow, vOff = a.vOff, vRow = a.vRow, headStride = a.headStride;
  // As the reference path: one float32 factor scale / c inside the tanh, or scale alone.
  const float scale = static_cast<float>(a.softcap > 0 ? a.scale / a.softcap : a.scale);
  const float softcap = static_cast<float>(a.softcap), ropeScaling = static_cast<float>(a.ropeScaling);
  if (B * T == 0) return;
  const int64_t rep = H / G;
  // 1. rotary q into `out` (the attention below reads each query row before writing it back), k and v into the caches.
  // With many rows (a prefill) cos/sin come from one table per distinct position id, which the rows share, not one
  // per row: the same function of the position, so the same values, for a fraction of the cos/sin calls.
  const int64_t half = rot / 2;
  std::vector<int32_t> tableRow;  // position id → its row in the tables, −1 when absent
  std::vector<float> tableCos, tableSin;
  if (rot && B * T > 1) {
    int32_t maxPos = -1;
    bool nonNegative = true;
    for (int64_t i = 0; i < B * T; i++) {
      nonNegative = nonNegative && a.positions[i] >= 0;
      maxPos = std::max(maxPos, a.positions[i]);
    }
    if (nonNegative && maxPos < 4 * B * T) {
      tableRow.assign(maxPos + 1, -1);
      int32_t n = 0;
      for (int64_t i = 0; i < B * T; i++) {
        if (tableRow[a.positions[i]] < 0) tableRow[a.positions[i]] = n++;
      }
      tableCos.resize(n * half);
      tableSin.resize(n * half);
      for (int32_t p = 0; p <= maxPos; p++) {
        if (tableRow[p] >= 0) RotaryTable(p, a.invFreq, half, ropeScaling, tableCos.data() + tableRow[p] * half, tableSin.data() + tableRow[p] * half);
      }
    }
  }
  rlhf_engine::ParallelFor(B * T, 16, [&](int64_t s, int64_t e) {
    std::vector<float> row(hs), cosRow(half), sinRow(half);
    for (int64_t bt = s; bt < e; bt++) {
      const int64_t b = bt / T, t = bt % T, slot = past + t;
      const float* cos = cosRow.data();
      const float* sin = sinRow.data();
      if (rot && !tableRow.empty()) {
        cos = tableCos.data() + tableRow[a.positions[bt]] * half;
        sin = tableSin.data() + tableRow[a.positions[bt]] * half;
      } else if (rot) {
        RotaryTable(a.positions[bt], a.invFreq, half, ropeScaling, cosRow.data(), sinRow.data());
      }
      for (int64_t h = 0; h < H; h++) {
        float* o = a.out + (bt * H + h) * hs;
        std::copy_n(a.q + qOff + bt * qRow + h * headStride, hs, o);
        if (rot) Rotate(o, half, cos, sin);
      }
      for (int64_t g = 0; g < G; g++) {
        std::copy_n(a.k + kOff + bt * kRow + g * headStride, hs, row.data());
        if (rot) Rotate(row.data(), half, cos, sin);
        float* kc = a.keys + (b * G + g) * hs * cap;
        for (int64_t i = 0; i < hs; i++) kc[i * cap + slot] = row[i];
        std::copy_n(a.v + vOff + bt * vRow + g * headStride, hs, a.values + ((b * G + g) * cap + slot) * hs);
      }
    }
  });

  // 2. per (b, kv head): its rep·T query rows (row t·rep + hr) against the keys first … past + t, scored kQueryGroup
  // rows at a time over the slots any of them sees (each row then reads its own range; every score is the same sum
  // in the same order as alone).
  const int64_t S = past + T;
  const int64_t rows = rep * T;
  rlhf_engine::ParallelFor(B * G, 1, [&](int64_t s, int64_t e) {
    std::vector<float> pbuf(kQueryGroup * cap), qbuf(kQueryGroup * hs), acc(hs);
    const float* qs[kQueryGroup];
    float* ps[kQueryGroup];
    for (int r = 0; r < kQueryGroup; r++) {
      qs[r] = qbuf.data() + r * hs;
      ps[r] = pbuf.data() + r * cap;  // indexed by slot
    }
    auto firstOf = [&](int64_t last) { return window > 0 ? std::max<int64_t>(0, last - window + 1) : int64_t{0}; };
    for (int64_t bg = s; bg < e; bg++) {
      const int64_t b = bg / G, g = bg % G;
      const float* kc = a.keys + bg * hs * cap;
      const float* vc = a.values + bg * cap * hs;
      const int32_t* m = a.mask + b * cap;
      auto outRow = [&](int64_t row) { return a.out + ((b * T + row / rep) * H + g * rep + row % rep) * hs; };
      for (int64_t r0 = 0; r0 < rows; r0 += kQueryGroup) {
        const int nq = static_cast<int>(std::min<int64_t>(kQueryGroup, rows - r0));
        const int64_t lo = firstOf(past + r0 / rep), hi = past + (r0 + nq - 1) / rep;
        float* sc[kQueryGroup];
        for (int r = 0; r < nq; r++) {
          std::copy_n(outRow(r0 + r), hs, qbuf.data() + r * hs);
          sc[r] = ps[r] + lo;
        }
        Scores(nq, qs, kc + lo, cap, hs, hi - lo + 1, cap - lo, sc);
        for (int r = 0; r < nq; r++) {
          const int64_t last = past + (r0 + r) / rep;  // the query's own slot
          const int64_t first = firstOf(last);
          float* p = ps[r] + first;
          const int64_t n = last - first + 1;
          // Scaled (and capped) scores, then the largest visible one, in separate loops: without the tanh call in
          // it the scaling loop and the masked maximum vectorise.
          if (softcap > 0) {
            for (int64_t j = 0; j < n; j++) p[j] = std::tanh(p[j] * scale) * softcap;
          } else {
            for (int64_t j = 0; j < n; j++) p[j] = p[j] * scale;
          }
          float max = -INFINITY;
          int32_t visible = 0;
          for (int64_t j = 0; j < n; j++) {
            const bool on = m[first + j] != 0;
            visible |= on;
            max = on && p[j] > max ? p[j] : max;
          }
          const bool any = visible != 0;
          if (any) {
            // As the engine's softmax: exponentials, their sum in double, one reciprocal.
            for (int64_t j = 0; j < n; j++) p[j] = m[first + j] != 0 ? rlhf_engine::FastExp(p[j] - max) : 0.f;
            const double sum = rlhf_engine::SumToDouble(p, n);
            const float inv = static_cast<float>(1.0 / sum);
            for (int64_t j = 0; j < n; j++) p[j] *= inv;
            Mix(p, vc + first * hs, hs, n, acc.data());
          } else {
            std::fill_n(ps[r], S, 1.f / static_cast<float>(S));
            Mix(ps[r], vc, hs, S, acc.data());
          }
          std::copy_n(acc.data(), hs, outRow(r0 + r));
        }
      }
    }
  });
}

void rlhf_engine::AddDecodeKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeAttention", Napi::Function::New(env, DecodeAttention));
  AddDecodeLayerKernels(env, exports);
}
