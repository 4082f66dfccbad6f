// A whole decoder layer of a decode step in one call, and the vocabulary head (src/engine/native_decode_layer.ts):
//
//   decodeLayer(weights, x, positions, invFreq, mask, keyCache, valueCache, dims, reals, lora)
//     weights: 24 arrays or nulls, by slot (Slot below), each as the checkpoint stores it; a matrix may be bf16
//       (an Int32Array of pairs, as src/models/ops/packed_weight.ts packs it), norms and biases are float32
//     lora: null, or per slot null or [A [r, in], B [out, r], scaling]: a LoRA adapter's term scaling·(x·Aᵀ)·Bᵀ added
//       to that projection's output
//     x [M = B·T, C]: the layer's input, overwritten with its output
//     dims  = [B, T, C, H, Hkv, hs, past, capacity, rotaryDim, window, attnKind, mlpKind, I, act, norm, inOutMask, parallel]
//     reals = [normEps, normWeightOffset, attnScale, attnSoftcap (0: none), rotaryScaling]
//   decodeHead(x, normWeight, normBias, head, logits, dims = [R, C, V, norm, headInOut], reals = [eps, offset, softcap])
//
// A layer: pre-norm → q/k/v products (→ Qwen3's per-head q/k norms) → attention over the cache (decode_attention.cc:
// rotary, cache write, mask, window, soft-capping) → o product → (sandwich norm) → residual → norm → MLP (plain,
// gated, or gate|up fused) → (sandwich norm) → residual; or GPT-NeoX's parallel residual x + attn(ln1 x) + mlp(ln2 x).
// The norms and activations are the fused training kernels' formulas (fused_kernels.cc), so the results match the
// tensor path within float32 rounding of the products' summation order.
//
// The products have few rows (M ≤ a few dozen: B rows of one new position): a BLAS sgemm would copy ("pack") the
// whole weight into its own layout on every call, which at M = 16 costs about as much as the product. These read
// each weight once, in its stored layout, and keep all M rows of x in cache: [K, N] weights (GPT-2's Conv1D) by
// broadcasting x values against 16 columns at a time, in blocks of rows; [N, K] weights (nn.Linear) as dot products
// of 3 weight rows with 4 x rows at a time. AVX2 + FMA where the build has them (the baseline: plain sums), split
// over output columns on the engine's threads (the same sums whatever the thread count).
// Generation's rows are few and short: as in train_attention.cc, an AVX-512 build vectorises this file 256 bits wide.
#ifdef __AVX512F__
#pragma GCC target("prefer-vector-width=256")
#endif

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define RLHF_DECODE_AVX2 1
#endif

#include "decode_shared.h"
#include "engine_shared.h"

namespace {

using rlhf_engine::ParallelFor;

[[noreturn]] void Fail(Napi::Env env, const char* fn, const std::string& what) {
  throw Napi::RangeError::New(env, std::string("engine.") + fn + ": " + what);
}

// ---- small-M products ----

// A weight matrix as stored: float32, or bf16 (the upper 16 bits of each float32, as src/models/ops/packed_weight.ts
// packs them), expanded to float32 as it is loaded.
struct Weight {
  const float* f = nullptr;
  const uint16_t* h = nullptr;
  explicit operator bool() const { return f || h; }
};

inline float Bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
inline float Get(const float* p, int64_t i) { return p[i]; }
inline float Get(const uint16_t* p, int64_t i) { return Bf16(p[i]); }

#ifdef RLHF_DECODE_AVX2
inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

constexpr int64_t kAhead = 24;

// MR rows of x (rows K apart) against the 16 columns n0 … n0 + 15 of rows 0 … kc − 1 of W [·, N], added to y's
// sums unless `first`. The sums are two 1-D arrays with every loop over them unrolled, so they stay in registers (a
// 2-D array of vectors was kept in memory, stored on every step).
template <int MR, class T>
__attribute__((noinline)) void InOutPanel(const float* x, int64_t K, const T* W, int64_t N, int64_t n0, int64_t kc, bool first, float* y) {
  __m256 a0[MR], a1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) {
    a0[r] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y + r * N + n0);
    a1[r] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(y + r * N + n0 + 8);
  }
  const T* w = W + n0;
  for (int64_t k = 0; k < kc; k++, w += N) {
    // Rows N values apart defeat the hardware prefetcher once a row exceeds a page: ask for the panel's row kAhead
    // rows on (from memory on the first group of rows, from cache on the others).
    if (k + kAhead < kc) {
      _mm_prefetch(reinterpret_cast<const char*>(w + kAhead * N), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w + kAhead * N + 15), _MM_HINT_T0);
    }
    const __m256 w0 = Load8(w), w1 = Load8(w + 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      const __m256 xr = _mm256_broadcast_ss(x + r * K + k);
      a0[r] = _mm256_fmadd_ps(xr, w0, a0[r]);
      a1[r] = _mm256_fmadd_ps(xr, w1, a1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++) {
    _mm256_storeu_ps(y + r * N + n0, a0[r]);
    _mm256_storeu_ps(y + r * N + n0 + 8, a1[r]);
  }
}

// MR rows of x dotted with the NR rows n0 … of W [N, K]: y[r, n0 + j]. `ahead`: rows of W to prefetch from
// n0 + NR on while these are read (the first group of x rows only; the others find these rows in cache).
template <int MR, int NR, class T>
void OutInBlock(const float* x, int64_t K, const T* W, int64_t n0, float* y, int64_t N, int64_t ahead) {
  __m256 acc[MR][NR];
  for (int r = 0; r < MR; r++)
    for (int j = 0; j < NR; j++) acc[r][j] = _mm256_setzero_ps();
  int64_t k = 0;
  const T* next = ahead ? W + (n0 + NR) * K : W;
  for (; k + 8 <= K; k += 8) {
    if (ahead && (k & 15) == 0) {
      for (int64_t j = 0; j < ahead; j++) _mm_prefetch(reinterpret_cast<const char*>(next + j * K + k), _MM_HINT_T0);
    }
    __m256 w[NR];
    for (int j = 0; j < NR; j++) w[j] = Load8(W + (n0 + j) * K + k);
    for (int r = 0; r < MR; r++) {
      const __m256 xr = _mm256_loadu_ps(x + r * K + k);
      for (int j = 0; j < NR; j++) acc[r][j] = _mm256_fmadd_ps(xr, w[j], acc[r][j]);
    }
  }
  for (int r = 0; r < MR; r++) {
    for (int j = 0; j < NR; j++) {
      float s = HSum(acc[r][j]);
      for (int64_t kk = k; kk < K; kk++) s += x[r * K + kk] * Get(W, (n0 + j) * K + kk);
      y[r * N + n0 + j] = s;
    }
  }
}

template <int MR, class T>
void OutInRows(const float* x, int64_t K, const T* W, int64_t n0, int64_t n1, float* y, int64_t N, int64_t ahead) {
  int64_t n = n0;
  for (; n + 3 <= n1; n += 3) OutInBlock<MR, 3>(x, K, W, n, y, N, ahead);
  for (; n < n1; n++) OutInBlock<MR, 1>(x, K, W, n, y, N, 0);
}
#endif

// Columns n0 … n1 − 1 of y [M, N] = x [M, K] · W, one plain sum per output (the tails the vector blocks leave, and
// the build without AVX2).
template <class T>
void ScalarColumns(const float* x, int64_t M, int64_t K, const T* W, int64_t N, bool inOut, int64_t n0, int64_t n1, float* y) {
  for (int64_t m = 0; m < M; m++) {
    for (int64_t n = n0; n < n1; n++) {
      float s = 0.f;
      if (inOut) for (int64_t k = 0; k < K; k++) s += x[m * K + k] * Get(W, k * N + n);
      else for (int64_t k = 0; k < K; k++) s += x[m * K + k] * Get(W, n * K + k);
      y[m * N + n] = s;
    }
  }
}

constexpr int64_t kPanel = 16;  // output columns per unit of work

// Columns n0 … n1 − 1 of y [M, N] = x [M, K] · W; W is [K, N] when inOut, else [N, K].
template <class T>
void ProductColumns(const float* x, int64_t M, int64_t K, const T* W, int64_t N, bool inOut, int64_t n0, int64_t n1, float* y) {
#ifdef RLHF_DECODE_AVX2
  if (inOut) {
    // Blocks of kc rows of W (about 512 KiB), each swept panel by panel for every group of x rows: a block stays in
    // cache while it is read, its rows in few pages, where whole columns of a [K, N] matrix span K pages each.
    const int64_t full = n0 + (n1 - n0) / kPanel * kPanel;
    const int64_t kc = std::max<int64_t>(16, (int64_t{1} << 19) / (4 * N));
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t rows = std::min(kc, K - k0);
      const T* Wk = W + k0 * N;
      for (int64_t n = n0; n < full; n += kPanel) {
        int64_t m = 0;
        for (; m + 6 <= M; m += 6) InOutPanel<6>(x + m * K + k0, K, Wk, N, n, rows, k0 == 0, y + m * N);
        switch (M - m) {
          case 5: InOutPanel<5>(x + m * K + k0, K, Wk, N, n, rows, k0 == 0, y + m * N); break;
          case 4: InOutPanel<4>(x + m * K + k0, K, Wk, N, n, rows, k0 == 0, y + m * N); break;
          case 3: InOutPanel<3>(x + m * K + k0, K, Wk, N, n, rows, k0 == 0, y + m * N); break;
          case 2: InOutPanel<2>(x + m * K + k0, K, Wk, N, n, rows, k0 == 0, y + m * N); break;
          case 1: InOutPanel<1>(x + m * K + k0, K, Wk, N, n, rows, k0 == 0, y + m * N); break;
          default: break;
        }
      }
    }
    ScalarColumns(x, M, K, W, N, true, full, n1, y);
  } else {
    // Each group of 3 weight rows is read from memory once and then from cache for every 4 rows of x.
    for (int64_t n = n0; n < n1; n += 3) {
      const int64_t nb = std::min<int64_t>(n + 3, n1), ahead = std::min<int64_t>(3, n1 - nb);
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) OutInRows<4>(x + m * K, K, W, n, nb, y + m * N, N, m == 0 ? ahead : 0);
      switch (M - m) {
        case 3: OutInRows<3>(x + m * K, K, W, n, nb, y + m * N, N, m == 0 ? ahead : 0); break;
        case 2: OutInRows<2>(x + m * K, K, W, n, nb, y + m * N, N, m == 0 ? ahead : 0); break;
        case 1: OutInRows<1>(x + m * K, K, W, n, nb, y + m * N, N, m == 0 ? ahead : 0); break;
        default: break;
      }
    }
  }
#else
  ScalarColumns(x, M, K, W, N, inOut, n0, n1, y);
#endif
}

// y [M, N] = x [M, K] · W (+ bias [N]); W is [K, N] when inOut, else [N, K].
void SmallProduct(const float* x, int64_t M, int64_t K, Weight W, int64_t N, bool inOut, const float* bias, float* y) {
  const int64_t panels = (N + kPanel - 1) / kPanel;
  // At least ~64k multiply-adds per task, so a thread's share outweighs waking it.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, M * K * kPanel));
  ParallelFor(panels, grain, [&](int64_t s, int64_t e) {
    const int64_t n0 = s * kPanel, n1 = std::min(N, e * kPanel);
    if (W.h) ProductColumns(x, M, K, W.h, N, inOut, n0, n1, y);
    else ProductColumns(x, M, K, W.f, N, inOut, n0, n1, y);
    if (bias) {
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = n0; n < n1; n++) y[m * N + n] += bias[n];
    }
  });
}

// ---- norms and activations (the formulas of fused_kernels.cc's forward kernels) ----

enum NormKind { kRmsNorm = 0, kLayerNorm = 1 };

// y = norm(x) row by row, weights w + offset (Gemma's 1 + w), bias b (LayerNorm, optional).
void NormRows(const float* x, int64_t M, int64_t C, int kind, const float* w, const float* b, float eps, float offset, float* y) {
  std::vector<float> wo(w, w + C), d(C);
  if (offset != 0.f) for (int64_t c = 0; c < C; c++) wo[c] = w[c] + offset;
  for (int64_t r = 0; r < M; r++) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    if (kind == kRmsNorm) {
      for (int64_t c = 0; c < C; c++) d[c] = xr[c] * xr[c];
      const float rs = 1.0f / std::sqrt(static_cast<float>(rlhf_engine::SumToDouble(d.data(), C) / static_cast<double>(C)) + eps);
      for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * rs * wo[c];
    } else {
      const float mu = static_cast<float>(rlhf_engine::SumToDouble(xr, C) / static_cast<double>(C));
      for (int64_t c = 0; c < C; c++) d[c] = (xr[c] - mu) * (xr[c] - mu);
      const float rs = 1.0f / std::sqrt(static_cast<float>(rlhf_engine::SumToDouble(d.data(), C) / static_cast<double>(C)) + eps);
      if (b) for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * wo[c] + b[c];
      else for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * wo[c];
    }
  }
}

enum ActKind { kSilu = 0, kGeluTanh = 1, kGeluErf = 2, kRelu = 3, kActKinds };

inline float Sigmoid(float v) { return 1.0f / (1.0f + rlhf_engine::FastExp(-v)); }

template <int K>
inline float ActOf(float v) {
  if (K == kSilu) return v * Sigmoid(v);
  if (K == kGeluTanh) return v * Sigmoid(v * (v * v * 0.044715f + 1.0f) * 1.5957691216057308f);  // 2·√(2/π)
  if (K == kGeluErf) return v * 0.5f * (static_cast<float>(std::erf(static_cast<double>(v * 0.70710678118654752f))) + 1.0f);
  return v > 0.f ? v : 0.f;
}

// out[i] = act(g[i]) (· up[i]) for n values: one loop per kind, so each vectorises (but erf's library call).
template <int K>
void ActRows(const float* g, const float* up, int64_t n, float* out) {
  if (up) for (int64_t i = 0; i < n; i++) out[i] = ActOf<K>(g[i]) * up[i];
  else for (int64_t i = 0; i < n; i++) out[i] = ActOf<K>(g[i]);
}

void Activate(int kind, const float* g, const float* up, int64_t n, float* out) {
  switch (kind) {
    case kSilu: return ActRows<kSilu>(g, up, n, out);
    case kGeluTanh: return ActRows<kGeluTanh>(g, up, n, out);
    case kGeluErf: return ActRows<kGeluErf>(g, up, n, out);
    default: return ActRows<kRelu>(g, up, n, out);
  }
}

// ---- argument reading ----

struct Span {
  float* data = nullptr;
  size_t n = 0;
};

Span FloatsOrNull(Napi::Env env, const char* fn, Napi::Value v, const std::string& name) {
  if (v.IsNull() || v.IsUndefined()) return {};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(env, std::string("engine.") + fn + ": " + name + " must be a Float32Array or null");
  }
  auto t = v.As<Napi::Float32Array>();
  return {t.Data(), t.ElementLength()};
}

Span NeedFloats(Napi::Env env, const char* fn, Napi::Value v, const std::string& name, int64_t n) {
  Span s = FloatsOrNull(env, fn, v, name);
  if (!s.data) Fail(env, fn, name + " is required");
  if (s.n != static_cast<size_t>(n)) Fail(env, fn, name + " has " + std::to_string(s.n) + " values, expected " + std::to_string(n));
  return s;
}

// A weight matrix of n values: a Float32Array of n, or an Int32Array of ⌈n / 2⌉ words holding bf16 pairs.
Weight MatrixOrNull(Napi::Env env, const char* fn, Napi::Value v, const std::string& name, int64_t n) {
  if (v.IsNull() || v.IsUndefined()) return {};
  if (v.IsTypedArray()) {
    auto t = v.As<Napi::TypedArray>();
    if (t.TypedArrayType() == napi_float32_array) {
      if (t.ElementLength() != static_cast<size_t>(n)) Fail(env, fn, name + " has " + std::to_string(t.ElementLength()) + " values, expected " + std::to_string(n));
      Weight w;
      w.f = v.As<Napi::Float32Array>().Data();
      return w;
    }
    if (t.TypedArrayType() == napi_int32_array) {
      if (t.ElementLength() != static_cast<size_t>((n + 1) / 2)) Fail(env, fn, name + " (bf16) has " + std::to_string(t.ElementLength()) + " words, expected " + std::to_string((n + 1) / 2));
      Weight w;
      w.h = reinterpret_cast<const uint16_t*>(v.As<Napi::Int32Array>().Data());
      return w;
    }
  }
  throw Napi::TypeError::New(env, std::string("engine.") + fn + ": " + name + " must be a Float32Array, an Int32Array of bf16 pairs, or null");
}

Napi::Int32Array NeedInts(Napi::Env env, const char* fn, Napi::Value v, const char* name, int64_t atLeast) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw Napi::TypeError::New(env, std::string("engine.") + fn + ": " + name + " must be an Int32Array");
  }
  auto t = v.As<Napi::Int32Array>();
  if (t.ElementLength() < static_cast<size_t>(atLeast)) Fail(env, fn, std::string(name) + " needs " + std::to_string(atLeast) + " entries");
  return t;
}

std::vector<double> Numbers(Napi::Env env, const char* fn, Napi::Value v, size_t count, const char* name, bool integers) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() != count) {
    throw Napi::TypeError::New(env, std::string("engine.") + fn + ": " + name + " must be an array of " + std::to_string(count) + " numbers");
  }
  auto a = v.As<Napi::Array>();
  std::vector<double> out(count);
  for (uint32_t k = 0; k < count; k++) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) throw Napi::TypeError::New(env, std::string("engine.") + fn + ": " + name + " must hold numbers");
    out[k] = e.As<Napi::Number>().DoubleValue();
    if (integers && (!(out[k] >= 0) || out[k] != std::floor(out[k]) || out[k] > 1e15)) Fail(env, fn, std::string(name) + " must be non-negative integers");
  }
  return out;
}

// Weight slots of decodeLayer (a bias or an optional norm may be null).
enum Slot {
  kLn1W, kLn1B, kQW, kQB, kKW, kKB, kVW, kVB, kOW, kOB, kLn2W, kLn2B, kInW, kInB, kUpW, kUpB, kDownW, kDownB,
  kPostAttnW, kPostAttnB, kPostMlpW, kPostMlpB, kQNormW, kKNormW, kSlots
};
enum AttnKind { kSeparate = 0, kFusedConcat = 1, kFusedPerHead = 2 };
enum MlpKind { kPlain = 0, kGated = 1, kGatedFused = 2 };

Napi::Value DecodeLayer(const Napi::CallbackInfo& info) {
  const char* fn = "decodeLayer";
  Napi::Env env = info.Env();
  if (info.Length() != 10) Fail(env, fn, "expects 10 arguments");
  const std::vector<double> d = Numbers(env, fn, info[7], 17, "dims", true);
  const std::vector<double> re = Numbers(env, fn, info[8], 5, "reals", false);
  const int64_t B = d[0], T = d[1], C = d[2], H = d[3], G = d[4], hs = d[5], past = d[6], cap = d[7], rot = d[8], window = d[9];
  const int attnKind = static_cast<int>(d[10]), mlpKind = static_cast<int>(d[11]), act = static_cast<int>(d[13]), norm = static_cast<int>(d[14]);
  const int64_t I = d[12];
  const int64_t inOutMask = d[15];
  const bool parallel = d[16] != 0;
  const float eps = static_cast<float>(re[0]), offset = static_cast<float>(re[1]);
  if (attnKind > kFusedPerHead || mlpKind > kGatedFused || act >= kActKinds || norm > kLayerNorm) Fail(env, fn, "unknown attention, MLP, activation or norm kind");
  if (G == 0 || H % G != 0) Fail(env, fn, "query heads must be a multiple of kv heads");
  if (attnKind == kFusedPerHead && G != H) Fail(env, fn, "per-head fused q, k, v needs as many kv heads as heads");
  if (past + T > cap) Fail(env, fn, "past + T exceeds the cache capacity");
  if (rot > hs || rot % 2 != 0) Fail(env, fn, "rotary dims must be even and at most hs");
  const int64_t M = B * T, qDim = H * hs, kvDim = G * hs;

  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() != kSlots) Fail(env, fn, "weights must be an array of " + std::to_string(kSlots));
  auto wa = info[0].As<Napi::Array>();
  auto need = [&](int slot, int64_t n) { return NeedFloats(env, fn, wa.Get(slot), "weight slot " + std::to_string(slot), n).data; };
  auto maybe = [&](int slot, int64_t n) -> const float* {
    Span s = FloatsOrNull(env, fn, wa.Get(slot), "weight slot " + std::to_string(slot));
    if (s.data && s.n != static_cast<size_t>(n)) Fail(env, fn, "weight slot " + std::to_string(slot) + " has " + std::to_string(s.n) + " values, expected " + std::to_string(n));
    return s.data;
  };
  auto needW = [&](int slot, int64_t n) {
    Weight w = MatrixOrNull(env, fn, wa.Get(slot), "weight slot " + std::to_string(slot), n);
    if (!w) Fail(env, fn, "weight slot " + std::to_string(slot) + " is required");
    return w;
  };
  auto inOut = [&](int slot) { return ((inOutMask >> slot) & 1) != 0; };
  const float *ln1w = need(kLn1W, C), *ln1b = maybe(kLn1B, C), *ln2w = need(kLn2W, C), *ln2b = maybe(kLn2B, C);
  const float *paw = maybe(kPostAttnW, C), *pab = maybe(kPostAttnB, C), *pmw = maybe(kPostMlpW, C), *pmb = maybe(kPostMlpB, C);
  const int64_t qkvDim = attnKind == kSeparate ? qDim : attnKind == kFusedConcat ? qDim + 2 * kvDim : 3 * qDim;
  const Weight qw = needW(kQW, C * qkvDim);
  const float* qb = maybe(kQB, qkvDim);
  Weight kw, vw;
  const float *kb = nullptr, *vb = nullptr;
  if (attnKind == kSeparate) {
    kw = needW(kKW, C * kvDim), kb = maybe(kKB, kvDim), vw = needW(kVW, C * kvDim), vb = maybe(kVB, kvDim);
  }
  const Weight ow = needW(kOW, qDim * C);
  const float* ob = maybe(kOB, C);
  const float *qnw = maybe(kQNormW, hs), *knw = maybe(kKNormW, hs);
  if ((qnw || knw) && attnKind != kSeparate) Fail(env, fn, "per-head q/k norms need separate q, k, v products");
  const int64_t inDim = mlpKind == kGatedFused ? 2 * I : I;
  const Weight inw = needW(kInW, C * inDim);
  const float *inb = maybe(kInB, inDim), *upb = nullptr;
  Weight upw;
  if (mlpKind == kGated) upw = needW(kUpW, C * I), upb = maybe(kUpB, I);
  const Weight downw = needW(kDownW, I * C);
  const float* downb = maybe(kDownB, C);

  // LoRA terms of the projections (inference: no dropout).
  struct Lora {
    const float *A = nullptr, *B = nullptr;
    int64_t r = 0;
    float scaling = 0.f;
  };
  std::vector<Lora> lora(kSlots);
  if (!info[9].IsNull() && !info[9].IsUndefined()) {
    if (!info[9].IsArray() || info[9].As<Napi::Array>().Length() != kSlots) Fail(env, fn, "lora must be null or an array of " + std::to_string(kSlots));
    auto la = info[9].As<Napi::Array>();
    const int64_t attnOut = attnKind == kSeparate ? qDim : qkvDim;
    const std::vector<std::pair<int, std::pair<int64_t, int64_t>>> shapes = {
      {kQW, {C, attnOut}}, {kKW, {C, kvDim}}, {kVW, {C, kvDim}}, {kOW, {qDim, C}}, {kInW, {C, inDim}}, {kUpW, {C, I}}, {kDownW, {I, C}}};
    for (const auto& [slot, io] : shapes) {
      Napi::Value e = la.Get(slot);
      if (e.IsNull() || e.IsUndefined()) continue;
      const std::string name = "lora slot " + std::to_string(slot);
      if (!e.IsArray() || e.As<Napi::Array>().Length() != 3) Fail(env, fn, name + " must be [A, B, scaling]");
      auto t = e.As<Napi::Array>();
      Span A = FloatsOrNull(env, fn, t.Get(0u), name + " A"), Bm = FloatsOrNull(env, fn, t.Get(1u), name + " B");
      if (!A.data || !Bm.data || !t.Get(2u).IsNumber()) Fail(env, fn, name + " must be [A, B, scaling]");
      const int64_t r = static_cast<int64_t>(A.n) / io.first;
      if (r == 0 || A.n != static_cast<size_t>(r * io.first) || Bm.n != static_cast<size_t>(io.second * r)) Fail(env, fn, name + ": A must be [r, in] and B [out, r]");
      lora[slot] = {A.data, Bm.data, r, static_cast<float>(t.Get(2u).As<Napi::Number>().DoubleValue())};
    }
  }
  // y [M, N] = in · W (+ bias) (+ the LoRA term, added as the tensor path adds it: scaling·((in·Aᵀ)·Bᵀ), then the sum).
  auto linear = [&](const float* in, int64_t K, int slot, Weight w, const float* b, int64_t N, float* y) {
    SmallProduct(in, M, K, w, N, inOut(slot), b, y);
    const Lora& l = lora[slot];
    if (!l.A) return;
    std::vector<float> t(M * l.r), dl(M * N);
    Weight A, Bw;
    A.f = l.A, Bw.f = l.B;
    SmallProduct(in, M, K, A, l.r, false, nullptr, t.data());
    SmallProduct(t.data(), M, l.r, Bw, N, false, nullptr, dl.data());
    for (int64_t i = 0; i < M * N; i++) y[i] = y[i] + dl[i] * l.scaling;
  };

  Span x = NeedFloats(env, fn, info[1], "x", M * C);
  auto positions = NeedInts(env, fn, info[2], "positions", M);
  Span invFreq = FloatsOrNull(env, fn, info[3], "invFreq");
  if (rot && (!invFreq.data || invFreq.n < static_cast<size_t>(rot / 2))) Fail(env, fn, "invFreq needs rotaryDim / 2 frequencies");
  auto mask = NeedInts(env, fn, info[4], "mask", B * cap);
  Span keys = NeedFloats(env, fn, info[5], "keyCache", B * G * hs * cap), values = NeedFloats(env, fn, info[6], "valueCache", B * G * cap * hs);
  if (M == 0) return env.Undefined();

  // 1. attention branch: h = ln1(x); q, k, v; attention over the cache; o product (+ sandwich norm)
  std::vector<float> h(M * C), qkv(M * qkvDim), kk(attnKind == kSeparate ? M * kvDim : 0), vv(kk.size()), att(M * qDim), a(M * C);
  NormRows(x.data, M, C, norm, ln1w, ln1b, eps, offset, h.data());
  linear(h.data(), C, kQW, qw, qb, qkvDim, qkv.data());
  rlhf_engine::DecodeAttentionArgs args{qkv.data(), qkv.data(), qkv.data(), positions.Data(), invFreq.data, mask.Data(), keys.data, values.data, att.data(),
                                        B, T, H, G, hs, past, cap, rot, window, 0, qkvDim, 0, qkvDim, 0, qkvDim, hs, re[2], re[3], re[4]};
  if (attnKind == kSeparate) {
    linear(h.data(), C, kKW, kw, kb, kvDim, kk.data());
    linear(h.data(), C, kVW, vw, vb, kvDim, vv.data());
    args.k = kk.data(), args.v = vv.data(), args.kRow = args.vRow = kvDim;
    // Qwen3: RMSNorm over each head of q and k, before the rotary embedding.
    if (qnw) NormRows(qkv.data(), M * H, hs, norm, qnw, nullptr, eps, offset, qkv.data());
    if (knw) NormRows(kk.data(), M * G, hs, norm, knw, nullptr, eps, offset, kk.data());
  } else if (attnKind == kFusedConcat) {
    args.kOff = qDim, args.vOff = qDim + kvDim;
  } else {
    args.kOff = hs, args.vOff = 2 * hs, args.headStride = 3 * hs;
  }
  rlhf_engine::RunDecodeAttention(args);
  linear(att.data(), qDim, kOW, ow, ob, C, a.data());
  if (paw) NormRows(a.data(), M, C, norm, paw, pab, eps, offset, a.data());

  // 2. residual, then the MLP on ln2 of the new x (parallel residual: ln2 of the block's input)
  std::vector<float> mid(M * inDim), gate(mlpKind == kGatedFused ? M * I : 0), up(mlpKind == kGated ? M * I : 0), m(M * C);
  if (!parallel) {
    for (int64_t i = 0; i < M * C; i++) x.data[i] += a[i];
  }
  NormRows(x.data, M, C, norm, ln2w, ln2b, eps, offset, h.data());
  linear(h.data(), C, kInW, inw, inb, inDim, mid.data());
  const float* down = mid.data();
  if (mlpKind == kPlain) {
    Activate(act, mid.data(), nullptr, M * I, mid.data());
  } else if (mlpKind == kGated) {
    linear(h.data(), C, kUpW, upw, upb, I, up.data());
    Activate(act, mid.data(), up.data(), M * I, mid.data());
  } else {
    for (int64_t r = 0; r < M; r++)
      Activate(act, mid.data() + r * 2 * I, mid.data() + r * 2 * I + I, I, gate.data() + r * I);
    down = gate.data();
  }
  linear(down, I, kDownW, downw, downb, C, m.data());
  if (pmw) NormRows(m.data(), M, C, norm, pmw, pmb, eps, offset, m.data());
  if (parallel) {
    for (int64_t i = 0; i < M * C; i++) x.data[i] = (x.data[i] + a[i]) + m[i];
  } else {
    for (int64_t i = 0; i < M * C; i++) x.data[i] += m[i];
  }
  return env.Undefined();
}

Napi::Value DecodeHead(const Napi::CallbackInfo& info) {
  const char* fn = "decodeHead";
  Napi::Env env = info.Env();
  if (info.Length() != 7) Fail(env, fn, "expects 7 arguments");
  const std::vector<double> d = Numbers(env, fn, info[5], 5, "dims", true);
  const std::vector<double> re = Numbers(env, fn, info[6], 3, "reals", false);
  const int64_t R = d[0], C = d[1], V = d[2];
  const int norm = static_cast<int>(d[3]);
  const bool headInOut = d[4] != 0;
  if (norm > kLayerNorm) Fail(env, fn, "unknown norm kind");
  Span x = NeedFloats(env, fn, info[0], "x", R * C);
  Span nw = FloatsOrNull(env, fn, info[1], "normWeight"), nb = FloatsOrNull(env, fn, info[2], "normBias");
  if ((nw.data && nw.n != static_cast<size_t>(C)) || (nb.data && nb.n != static_cast<size_t>(C))) Fail(env, fn, "the norm's weight and bias need C values");
  const Weight head = MatrixOrNull(env, fn, info[3], "head", V * C);
  if (!head) Fail(env, fn, "head is required");
  Span logits = NeedFloats(env, fn, info[4], "logits", R * V);
  std::vector<float> h(x.data, x.data + R * C);
  if (nw.data) NormRows(x.data, R, C, norm, nw.data, nb.data, static_cast<float>(re[0]), static_cast<float>(re[1]), h.data());
  SmallProduct(h.data(), R, C, head, V, headInOut, nullptr, logits.data);
  const double cap = re[2];
  if (cap > 0) {
    // As softcapLogits: c·tanh(z / c) in float32.
    const float c = static_cast<float>(cap);
    for (int64_t i = 0; i < R * V; i++) logits.data[i] = std::tanh(logits.data[i] / c) * c;
  }
  return env.Undefined();
}

}  // namespace

void rlhf_engine::AddDecodeLayerKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeLayer", Napi::Function::New(env, DecodeLayer));
  exports.Set("decodeHead", Napi::Function::New(env, DecodeHead));
}
