// Causal self-attention for training, forward and backward, in one call each per layer (src/models/ops/attention.ts,
// fusedSelfAttention): at small shapes (T 64–128, head size 32) the per-head products, head transposes and softmax
// passes of the op-by-op path cost more in calls and memory traffic than in arithmetic.
//
//   trainAttention(q, k, v, dims, layouts, bias, biasStrides, reals, mask | null, out, probs)
//   trainAttentionGrad(dy, q, k, v, dims, layouts, bias, biasStrides, probs, mask | null, reals, dq, dk, dv)
//     dims    = [B, T, S, H, Hkv, hs]
//     layouts = [qOffset, qBatch, qRow, qHead, kOffset, kBatch, kRow, kHead, vOffset, vBatch, vRow, vHead]: head h of
//               position t of row b starts at offset + b·batch + t·row + h·head (its hs values contiguous), so q, k
//               and v are read where the projections wrote them (separate outputs, a fused q|k|v, per-head q, k, v)
//     bias    broadcast over [B, H, T, S] by biasStrides [sB, sH, sT, sS] (0 on a broadcast axis): causal, padding,
//             window and ALiBi terms, as the op-by-op path adds them
//     reals   = [scale, softcap (0: none)]
//     mask    the dropout mask [B, H, T, S] (0 or 1/(1 − rate)) or null
//   Forward: P = softmax(s + bias) with s = q·kᵀ·scale (softcap c: c·tanh(q·kᵀ·scale/c)), out = (P ⊙ mask)·v written
//   as [B, T, H, hs]; P saved in probs [B, H, T, S]. Backward (dy [B, T, H, hs]): dv = (P ⊙ mask)ᵀ·dy,
//   dP = (dy·vᵀ) ⊙ mask, dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale (· (1 − tanh²) with softcap), dq = dS·k, dk = dSᵀ·q,
//   each written in its input's layout (dq, dk, dv may be one array when q, k, v came in one).
// Grouped heads: query head h reads kv head h / (H / Hkv). The work is split over (b, kv head), so the k and v
// gradients of a kv head sum over its query heads in one task, without atomics. Softmax sums run in double, as the
// fused softmax kernels' do. Products of exact zeros (masked or dropped probabilities) are skipped.
// The rows here are short (a query's visible keys): 8-float vectors beat AVX-512's 16 on them (tiny-chat's forward
// 9.0 → 8.6 ms, shakespeare-char's 3.8 → 3.3 ms), so an AVX-512 build vectorises this file's loops 256 bits wide.
#ifdef __AVX512F__
#pragma GCC target("prefer-vector-width=256")
#endif

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine_shared.h"

#ifdef __FMA__
#include <immintrin.h>
#endif

namespace rlhf_engine {
namespace {

[[noreturn]] void Fail(Napi::Env env, const char* fn, const std::string& what) {
  throw Napi::RangeError::New(env, std::string("engine.") + fn + ": " + what);
}

float* FloatArray(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t elems, bool optional = false) {
  if (optional && (info[i].IsNull() || info[i].IsUndefined())) return nullptr;
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be a Float32Array");
  }
  auto t = info[i].As<Napi::Float32Array>();
  if (static_cast<int64_t>(t.ElementLength()) < elems) {
    Fail(info.Env(), fn, std::string(name) + " needs " + std::to_string(elems) + " elements but holds " + std::to_string(t.ElementLength()));
  }
  return t.Data();
}

std::vector<int64_t> Ints(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, uint32_t n) {
  if (!info[i].IsArray() || info[i].As<Napi::Array>().Length() != n) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be an array of " + std::to_string(n) + " integers");
  }
  auto a = info[i].As<Napi::Array>();
  std::vector<int64_t> out(n);
  for (uint32_t k = 0; k < n; k++) {
    const double d = a.Get(k).As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != std::floor(d)) Fail(info.Env(), fn, std::string(name) + " must hold non-negative integers");
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

struct Layout {
  int64_t offset, batch, row, head;
  int64_t At(int64_t b, int64_t t, int64_t h) const { return offset + b * batch + t * row + h * head; }
  int64_t Last(int64_t B, int64_t T, int64_t H, int64_t hs) const { return At(B - 1, T - 1, H - 1) + hs; }
};

struct Shape {
  int64_t B, T, S, H, G, hs;
};

// dims, layouts and reals as the two entry points take them; checks that every head of every layout lies inside
// the array it reads.
struct Args {
  Shape d;
  Layout lq, lk, lv;
  float scale, softcap;
};

Args ParseArgs(const Napi::CallbackInfo& info, size_t dimsAt, size_t layoutsAt, size_t realsAt, const char* fn) {
  const auto dims = Ints(info, dimsAt, fn, "dims", 6);
  const auto lay = Ints(info, layoutsAt, fn, "layouts", 12);
  Args a{{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]},
         {lay[0], lay[1], lay[2], lay[3]}, {lay[4], lay[5], lay[6], lay[7]}, {lay[8], lay[9], lay[10], lay[11]}, 0, 0};
  if (a.d.G == 0 || a.d.H % a.d.G != 0) Fail(info.Env(), fn, "H must be a multiple of Hkv > 0");
  if (a.d.S < a.d.T) Fail(info.Env(), fn, "S must be at least T");
  if (!info[realsAt].IsArray() || info[realsAt].As<Napi::Array>().Length() != 2) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": reals must be [scale, softcap]");
  }
  auto r = info[realsAt].As<Napi::Array>();
  a.scale = r.Get(0u).As<Napi::Number>().FloatValue();
  a.softcap = r.Get(1u).As<Napi::Number>().FloatValue();
  return a;
}

bool Empty(const Shape& d) { return d.B == 0 || d.T == 0 || d.H == 0 || d.hs == 0; }

// Eight floats as one value (GCC/Clang vector extensions: one AVX register, or two SSE ones), loaded and stored
// unaligned; Fma(a, b, c) = a·b + c, fused where the CPU has FMA (the build passes -ffp-contract=off, so only
// written ones are fused).
typedef float V8 __attribute__((vector_size(32)));
typedef float V8u __attribute__((vector_size(32), aligned(4)));
inline V8 Load(const float* p) { return *reinterpret_cast<const V8u*>(p); }
inline void Store(float* p, V8 v) { *reinterpret_cast<V8u*>(p) = v; }
inline V8 Splat(float x) { return V8{x, x, x, x, x, x, x, x}; }
inline V8 Fma(V8 a, V8 b, V8 c) {
#ifdef __FMA__
  return reinterpret_cast<V8>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b), reinterpret_cast<__m256>(c)));
#else
  return a * b + c;
#endif
}
inline float Madd(float a, float b, float c) {
#ifdef __FMA__
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

// kt [hs, S] = the keys (or values) of kv head g of row b, transposed: a query's scores are then hs passes over
// contiguous keys (vectorised), with no horizontal sums.
void Transposed(const float* x, const Layout& l, const Shape& d, int64_t b, int64_t g, float* xt) {
  for (int64_t j = 0; j < d.S; j++) {
    const float* xj = x + l.At(b, j, g);
    for (int64_t c = 0; c < d.hs; c++) xt[c * d.S + j] = xj[c];
  }
}

// rows[r][j] = Σ_c a[r][c]·bt[c, j] for R rows and j in [j0, j1): R rows × 16 keys of sums held in registers, each
// load of bt serving R rows (with R = 4 there are 8 independent chains of multiply-adds, enough to hide their latency).
template <int R>
void ScoreBlock(const float* const* a, const float* bt, int64_t hs, int64_t S, int64_t jb, float* const* rows) {
  V8 lo[R], hi[R];
  for (int r = 0; r < R; r++) lo[r] = hi[r] = Splat(0.0f);
  for (int64_t c = 0; c < hs; c++) {
    const V8 b0 = Load(bt + c * S + jb), b1 = Load(bt + c * S + jb + 8);
    for (int r = 0; r < R; r++) {
      const V8 ar = Splat(a[r][c]);
      lo[r] = Fma(ar, b0, lo[r]);
      hi[r] = Fma(ar, b1, hi[r]);
    }
  }
  for (int r = 0; r < R; r++) {
    Store(rows[r] + jb, lo[r]);
    Store(rows[r] + jb + 8, hi[r]);
  }
}

// rows[r][j] = Σ_c a[r][c]·bt[c, j] for R rows and j in [j0, j1) (rows S long; entries outside [j0, j1) may be
// written too): R rows × 16 keys of sums held in registers, each load of bt serving R rows (with R = 4 there are 8
// independent chains of multiply-adds, enough to hide their latency). A last partial block is computed whole,
// moved back to end at j1 or at S (recomputing some keys rather than running a loop over memory).
template <int R>
void Scores(const float* const* a, const float* bt, int64_t hs, int64_t S, int64_t j0, int64_t j1, float* const* rows) {
  constexpr int64_t kBlock = 16;
  int64_t jb = j0;
  for (; jb + kBlock <= j1; jb += kBlock) ScoreBlock<R>(a, bt, hs, S, jb, rows);
  if (jb == j1) return;
  if (S >= kBlock) {
    ScoreBlock<R>(a, bt, hs, S, std::min(jb, S - kBlock), rows);
    return;
  }
  for (int r = 0; r < R; r++) {
    float* row = rows[r];
    std::fill(row + jb, row + j1, 0.0f);
    for (int64_t c = 0; c < hs; c++) {
      const float ar = a[r][c];
      const float* bc = bt + c * S;
      for (int64_t j = jb; j < j1; j++) row[j] = Madd(ar, bc[j], row[j]);
    }
  }
}

// Scores of `count` rows (any number), four at a time.
void ScoreRows(const float* const* a, int64_t count, const float* bt, int64_t hs, int64_t S, int64_t j0, int64_t j1, float* const* rows) {
  int64_t r = 0;
  for (; r + 4 <= count; r += 4) Scores<4>(a + r, bt, hs, S, j0, j1, rows + r);
  for (; r < count; r++) Scores<1>(a + r, bt, hs, S, j0, j1, rows + r);
}

// out[0, hs) (+)= Σ_{n in [n0, n1)} w[n·ws]·x[n·xs + (0, hs)]; for head sizes that are multiples of 8 up to 128
// (HS > 0) the sum stays in registers (for small heads as two interleaved sums, even and odd n, so that
// consecutive multiply-adds do not wait on each other).
template <int HS>
void Mix(const float* w, int64_t ws, int64_t n0, int64_t n1, const float* x, int64_t xs, int64_t hs, float* out, bool accumulate) {
  if constexpr (HS > 0) {
    constexpr int L = HS / 8;
    // Two sums when they fit in the 16 AVX registers with room to spare (HS ≤ 32); wider heads have enough
    // independent chains in one.
    constexpr bool kTwo = L <= 4;
    V8 even[L], odd[L];
    for (int c = 0; c < L; c++) even[c] = odd[c] = Splat(0.0f);
    int64_t n = n0;
    if constexpr (kTwo) {
      for (; n + 2 <= n1; n += 2) {
        const V8 w0 = Splat(w[n * ws]), w1 = Splat(w[(n + 1) * ws]);
        const float *x0 = x + n * xs, *x1 = x0 + xs;
        for (int c = 0; c < L; c++) {
          even[c] = Fma(w0, Load(x0 + 8 * c), even[c]);
          odd[c] = Fma(w1, Load(x1 + 8 * c), odd[c]);
        }
      }
    }
    for (; n < n1; n++) {
      const V8 w0 = Splat(w[n * ws]);
      const float* x0 = x + n * xs;
      for (int c = 0; c < L; c++) even[c] = Fma(w0, Load(x0 + 8 * c), even[c]);
    }
    for (int c = 0; c < L; c++) Store(out + 8 * c, accumulate ? Load(out + 8 * c) + (even[c] + odd[c]) : even[c] + odd[c]);
  } else {
    if (!accumulate) std::fill(out, out + hs, 0.0f);
    for (int64_t n = n0; n < n1; n++) {
      const float wn = w[n * ws];
      const float* xn = x + n * xs;
      for (int64_t c = 0; c < hs; c++) out[c] = Madd(wn, xn[c], out[c]);
    }
  }
}

// Wider heads (and sizes like 80 or 96) as slices of W columns, each summed in registers: 16 sums of 8 for a head
// of 128 would leave no register for the weight.
template <int W>
void MixSlices(const float* w, int64_t ws, int64_t n0, int64_t n1, const float* x, int64_t xs, int64_t hs, float* out, bool accumulate) {
  for (int64_t c0 = 0; c0 < hs; c0 += W) Mix<W>(w, ws, n0, n1, x + c0, xs, W, out + c0, accumulate);
}

using MixFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*, bool);
MixFn MixFor(int64_t hs) {
  if (hs == 16) return Mix<16>;
  if (hs == 32) return Mix<32>;
  if (hs == 64) return Mix<64>;
  if (hs % 64 == 0) return MixSlices<64>;
  if (hs % 32 == 0) return MixSlices<32>;
  if (hs % 16 == 0) return MixSlices<16>;
  if (hs % 8 == 0) return MixSlices<8>;
  return Mix<0>;
}

// out[r][0, hs) (+)= Σ_{n in [n0, n1)} w[r][n·ns]·x[n·xs + (0, hs)] for R outputs at once: each load of x serves R
// rows of weights (R·HS/8 sums in registers, independent chains of multiply-adds), where Mix above loads x once per
// output. The forward's P·v and the backward's dS·k take rows of weights (ns = 1); the backward's Pᵀ·dy and dSᵀ·q
// take R adjacent columns of the untransposed [T, S] tiles (ns = S), so no tile is transposed.
template <int R, int HS>
void MixBlock(const float* const* w, int64_t ns, int64_t n0, int64_t n1, const float* x, int64_t xs, float* const* out, bool accumulate) {
  constexpr int L = HS / 8;
  V8 acc[R][L];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < L; c++) acc[r][c] = Splat(0.0f);
  for (int64_t n = n0; n < n1; n++) {
    const float* xn = x + n * xs;
    V8 xv[L];
    for (int c = 0; c < L; c++) xv[c] = Load(xn + 8 * c);
    for (int r = 0; r < R; r++) {
      const V8 wr = Splat(w[r][n * ns]);
      for (int c = 0; c < L; c++) acc[r][c] = Fma(wr, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < L; c++) Store(out[r] + 8 * c, accumulate ? Load(out[r] + 8 * c) + acc[r][c] : acc[r][c]);
}

// Vector registers of the build: AVX-512VL gives the 8-float blocks 32, AVX2 16.
#ifdef __AVX512VL__
constexpr int kVectorRegisters = 32;
#else
constexpr int kVectorRegisters = 16;
#endif

// Outputs per MixBlock for a head of HS: R·L sums, L loads of x and one weight fit in the registers (1 to 4).
template <int HS>
constexpr int BlockRows() {
  constexpr int L = HS / 8;
  constexpr int r = (kVectorRegisters - 1 - L) / L;
  return r < 1 ? 1 : (r > 4 ? 4 : r);
}

template <int HS>
void MixRowsOf(const float* const* w, int64_t count, int64_t ns, int64_t n0, int64_t n1, const float* x, int64_t xs, float* const* out, bool accumulate) {
  constexpr int64_t kMax = BlockRows<HS>();
  for (int64_t r = 0; r < count; r += kMax) {
    const int64_t m = std::min(kMax, count - r);
    if (m >= 4) MixBlock<4 <= kMax ? 4 : 1, HS>(w + r, ns, n0, n1, x, xs, out + r, accumulate);
    else if (m == 3) MixBlock<3 <= kMax ? 3 : 1, HS>(w + r, ns, n0, n1, x, xs, out + r, accumulate);
    else if (m == 2) MixBlock<2 <= kMax ? 2 : 1, HS>(w + r, ns, n0, n1, x, xs, out + r, accumulate);
    else MixBlock<1, HS>(w + r, ns, n0, n1, x, xs, out + r, accumulate);
  }
}

// MixBlock over `count` outputs (at most kRows) for any head size: heads of 16, 32 or 64, and multiples of 64 in
// slices of 64 columns, in blocks; other sizes one output at a time through Mix.
void MixRows(const float* const* w, int64_t count, int64_t ns, int64_t n0, int64_t n1, const float* x, int64_t xs, int64_t hs, float* const* out, bool accumulate) {
  if (hs == 16) return MixRowsOf<16>(w, count, ns, n0, n1, x, xs, out, accumulate);
  if (hs == 32) return MixRowsOf<32>(w, count, ns, n0, n1, x, xs, out, accumulate);
  if (hs % 64 == 0) {
    float* slice[4];
    for (int64_t c0 = 0; c0 < hs; c0 += 64) {
      for (int64_t r = 0; r < count; r++) slice[r] = out[r] + c0;
      MixRowsOf<64>(w, count, ns, n0, n1, x + c0, xs, slice, accumulate);
    }
    return;
  }
  const MixFn mix = MixFor(hs);
  for (int64_t r = 0; r < count; r++) mix(w[r], ns, n0, n1, x, xs, hs, out[r], accumulate);
}

// A key whose bias is at most this is masked (the models' mask adds −1e9): when a row has any other key, such a
// key's probability is exactly 0 in float32 (exp of about −1e9), so its scores need not be computed.
constexpr float kHidden = -1e8f;

// Query rows whose scores are computed together (Scores<4>).
constexpr int64_t kRows = 4;

// Which keys each query row sees, from the bias of one (b, h): row t's visible keys lie in [lo[t], hi[t]) (all S
// keys when none is visible: the dense softmax then averages them all), and key j is seen by rows in
// [first[j], last[j]) (empty when first ≥ last). Heads that share a bias (the usual [B | 1, 1, T, S]) share it.
struct Visibility {
  std::vector<int64_t> lo, hi, first, last;
  const float* of = nullptr;

  void For(const float* bh, const std::vector<int64_t>& bst, int64_t T, int64_t S) {
    if (bh == of) return;
    of = bh;
    lo.resize(static_cast<size_t>(T));
    hi.resize(static_cast<size_t>(T));
    first.assign(static_cast<size_t>(S), T);
    last.assign(static_cast<size_t>(S), 0);
    for (int64_t t = 0; t < T; t++) {
      const float* br = bh + t * bst[2];
      int64_t a0 = 0, a1 = S;
      while (a0 < S && br[a0 * bst[3]] <= kHidden) a0++;
      if (a0 == S) a0 = 0;
      else while (br[(a1 - 1) * bst[3]] <= kHidden) a1--;
      lo[t] = a0;
      hi[t] = a1;
      for (int64_t j = a0; j < a1; j++) {
        first[j] = std::min(first[j], t);
        last[j] = t + 1;
      }
    }
  }
};

Napi::Value TrainAttention(const Napi::CallbackInfo& info) {
  const char* fn = "trainAttention";
  if (info.Length() != 11) throw Napi::TypeError::New(info.Env(), "engine.trainAttention takes 11 arguments");
  const Args a = ParseArgs(info, 3, 4, 7, fn);
  const Shape d = a.d;
  if (Empty(d)) return info.Env().Undefined();
  const float* q = FloatArray(info, 0, fn, "q", a.lq.Last(d.B, d.T, d.H, d.hs));
  const float* k = FloatArray(info, 1, fn, "k", a.lk.Last(d.B, d.S, d.G, d.hs));
  const float* v = FloatArray(info, 2, fn, "v", a.lv.Last(d.B, d.S, d.G, d.hs));
  const auto bst = Ints(info, 6, fn, "biasStrides", 4);
  const float* bias = FloatArray(info, 5, fn, "bias", (d.B - 1) * bst[0] + (d.H - 1) * bst[1] + (d.T - 1) * bst[2] + (d.S - 1) * bst[3] + 1);
  const int64_t cells = d.B * d.H * d.T * d.S;
  const float* mask = FloatArray(info, 8, fn, "mask", cells, true);
  float* out = FloatArray(info, 9, fn, "out", d.B * d.T * d.H * d.hs);
  float* probs = FloatArray(info, 10, fn, "probs", cells);
  const int64_t rep = d.H / d.G;
  ParallelFor(d.B * d.G, 1, [&](int64_t s, int64_t e) {
    std::vector<float> kt(static_cast<size_t>(d.hs * d.S)), dropped(static_cast<size_t>(mask ? kRows * d.S : 0));
    Visibility vis;
    for (int64_t task = s; task < e; task++) {
      const int64_t b = task / d.G, g = task % d.G;
      Transposed(k, a.lk, d, b, g, kt.data());
      for (int64_t h = g * rep; h < (g + 1) * rep; h++) {
        vis.For(bias + b * bst[0] + h * bst[1], bst, d.T, d.S);
        for (int64_t t0 = 0; t0 < d.T; t0 += kRows) {
          const int64_t count = std::min(kRows, d.T - t0);
          // The scores of the block's rows are computed over the union of their visible ranges.
          int64_t j0 = d.S, j1 = 0;
          const float* qs[kRows];
          float* ps[kRows];
          for (int64_t r = 0; r < count; r++) {
            const int64_t t = t0 + r;
            j0 = std::min(j0, vis.lo[t]);
            j1 = std::max(j1, vis.hi[t]);
            qs[r] = q + a.lq.At(b, t, h);
            ps[r] = probs + ((b * d.H + h) * d.T + t) * d.S;
          }
          ScoreRows(qs, count, kt.data(), d.hs, d.S, j0, j1, ps);
          const float* ws[kRows];
          float* outs[kRows];
          for (int64_t r = 0; r < count; r++) {
            const int64_t t = t0 + r;
            float* p = ps[r];
            const float* br = bias + b * bst[0] + h * bst[1] + t * bst[2];
            const int64_t r0 = vis.lo[t], r1 = vis.hi[t];
            std::fill(p, p + r0, 0.0f);
            std::fill(p + r1, p + d.S, 0.0f);
            if (a.softcap > 0) {
              const float inner = a.scale / a.softcap;
              for (int64_t j = r0; j < r1; j++) p[j] = std::tanh(p[j] * inner) * a.softcap + br[j * bst[3]];
            } else if (bst[3] == 1) {
              for (int64_t j = r0; j < r1; j++) p[j] = p[j] * a.scale + br[j];
            } else {
              for (int64_t j = r0; j < r1; j++) p[j] = p[j] * a.scale + br[j * bst[3]];
            }
            const float m = MaxOf(p + r0, r1 - r0);
            for (int64_t j = r0; j < r1; j++) p[j] = FastExp(p[j] - m);
            const float inv = static_cast<float>(1.0 / SumToDouble(p + r0, r1 - r0));
            for (int64_t j = r0; j < r1; j++) p[j] *= inv;
            ws[r] = p;
            if (mask) {
              // Over the block's union of visible keys: p is 0 outside the row's own, and so is p ⊙ mask.
              const float* mr = mask + (p - probs);
              float* dr = dropped.data() + r * d.S;
              for (int64_t j = j0; j < j1; j++) dr[j] = p[j] * mr[j];
              ws[r] = dr;
            }
            outs[r] = out + ((b * d.T + t) * d.H + h) * d.hs;
          }
          // out_t = Σ_j w_tj·v_j for the block's rows together, over the union of their visible keys (exact zeros
          // elsewhere in each row).
          MixRows(ws, count, 1, j0, j1, v + a.lv.At(b, 0, g), a.lv.row, d.hs, outs, false);
        }
      }
    }
  });
  return info.Env().Undefined();
}

Napi::Value TrainAttentionGrad(const Napi::CallbackInfo& info) {
  const char* fn = "trainAttentionGrad";
  if (info.Length() != 14) throw Napi::TypeError::New(info.Env(), "engine.trainAttentionGrad takes 14 arguments");
  const Args a = ParseArgs(info, 4, 5, 10, fn);
  const Shape d = a.d;
  if (Empty(d)) return info.Env().Undefined();
  const int64_t cells = d.B * d.H * d.T * d.S;
  const float* dy = FloatArray(info, 0, fn, "dy", d.B * d.T * d.H * d.hs);
  const float* q = FloatArray(info, 1, fn, "q", a.lq.Last(d.B, d.T, d.H, d.hs));
  const float* k = FloatArray(info, 2, fn, "k", a.lk.Last(d.B, d.S, d.G, d.hs));
  const float* v = FloatArray(info, 3, fn, "v", a.lv.Last(d.B, d.S, d.G, d.hs));
  const auto bst = Ints(info, 7, fn, "biasStrides", 4);
  const float* bias = FloatArray(info, 6, fn, "bias", (d.B - 1) * bst[0] + (d.H - 1) * bst[1] + (d.T - 1) * bst[2] + (d.S - 1) * bst[3] + 1);
  const float* probs = FloatArray(info, 8, fn, "probs", cells);
  const float* mask = FloatArray(info, 9, fn, "mask", cells, true);
  float* dq = FloatArray(info, 11, fn, "dq", a.lq.Last(d.B, d.T, d.H, d.hs));
  float* dk = FloatArray(info, 12, fn, "dk", a.lk.Last(d.B, d.S, d.G, d.hs));
  float* dv = FloatArray(info, 13, fn, "dv", a.lv.Last(d.B, d.S, d.G, d.hs));
  const int64_t rep = d.H / d.G;
  const int64_t dyRow = d.H * d.hs;
  ParallelFor(d.B * d.G, 1, [&](int64_t s, int64_t e) {
    const size_t tile = static_cast<size_t>(d.T * d.S);
    std::vector<float> vt(static_cast<size_t>(d.hs * d.S)), kt(a.softcap > 0 ? static_cast<size_t>(d.hs * d.S) : 0);
    // ds: dS row by row (ds2: P ⊙ mask), [T, S]; step 2 reads both by columns.
    std::vector<float> ds(tile), ds2(mask ? tile : 0), pdp(static_cast<size_t>(d.S)), scores(a.softcap > 0 ? static_cast<size_t>(d.S) : 0);
    Visibility vis;
    for (int64_t task = s; task < e; task++) {
      const int64_t b = task / d.G, g = task % d.G;
      Transposed(v, a.lv, d, b, g, vt.data());
      if (a.softcap > 0) Transposed(k, a.lk, d, b, g, kt.data());
      for (int64_t h = g * rep; h < (g + 1) * rep; h++) {
        const float* ph = probs + (b * d.H + h) * d.T * d.S;
        const float* mh = mask ? mask + (ph - probs) : nullptr;
        const float* dyh = dy + b * d.T * dyRow + h * d.hs;
        // 1. per query t: dP = (dy_t·vᵀ) ⊙ mask, dS = p ⊙ (dP − Σ dP ⊙ p)·scale over its visible keys (p, hence dS,
        // is 0 elsewhere), then dq_t = dS_t·k
        vis.For(bias + b * bst[0] + h * bst[1], bst, d.T, d.S);
        const std::vector<int64_t>& lo = vis.lo;
        const std::vector<int64_t>& hi = vis.hi;
        for (int64_t t0 = 0; t0 < d.T; t0 += kRows) {
          const int64_t count = std::min(kRows, d.T - t0);
          const float* dys[kRows];
          float* dss[kRows];
          int64_t j0 = d.S, j1 = 0;
          for (int64_t r = 0; r < count; r++) {
            dys[r] = dyh + (t0 + r) * dyRow;
            dss[r] = ds.data() + (t0 + r) * d.S;
            if (lo[t0 + r] < hi[t0 + r]) {
              j0 = std::min(j0, lo[t0 + r]);
              j1 = std::max(j1, hi[t0 + r]);
            }
          }
          if (j0 < j1) ScoreRows(dys, count, vt.data(), d.hs, d.S, j0, j1, dss);
          float* dqs[kRows];
          for (int64_t r = 0; r < count; r++) {
            const int64_t t = t0 + r, r0 = lo[t], r1 = hi[t];
            const float* p = ph + t * d.S;
            float* dst = dss[r];
            std::fill(dst, dst + r0, 0.0f);
            std::fill(dst + std::max(r0, r1), dst + d.S, 0.0f);
            dqs[r] = dq + a.lq.At(b, t, h);
            if (r0 == r1) continue;  // a row of zeros: dq_t = 0
            if (mh) for (int64_t j = r0; j < r1; j++) dst[j] *= mh[t * d.S + j];
            for (int64_t j = r0; j < r1; j++) pdp[j] = p[j] * dst[j];
            const float dot = static_cast<float>(SumToDouble(pdp.data() + r0, r1 - r0));
            for (int64_t j = r0; j < r1; j++) dst[j] = p[j] * (dst[j] - dot) * a.scale;
            if (a.softcap > 0) {
              const float* qr = q + a.lq.At(b, t, h);
              float* sr = scores.data();
              ScoreRows(&qr, 1, kt.data(), d.hs, d.S, r0, r1, &sr);
              const float inner = a.scale / a.softcap;
              for (int64_t j = r0; j < r1; j++) {
                const float th = std::tanh(scores[j] * inner);
                dst[j] *= 1.0f - th * th;
              }
            }
          }
          // dq_t = dS_t·k for the block's rows together, over the union of their visible keys (dS is 0 elsewhere).
          MixRows(dss, count, 1, std::min(j0, j1), j1, k + a.lk.At(b, 0, g), a.lk.row, d.hs, dqs, false);
        }
        // 2. per key j: dv_j (+)= Σ_t (p ⊙ mask)_tj·dy_t, dk_j (+)= Σ_t dS_tj·q_t (the first query head of the group
        // writes, the others add)
        const float* pm = ph;
        if (mh) {
          for (int64_t i = 0; i < d.T * d.S; i++) ds2[i] = ph[i] * mh[i];
          pm = ds2.data();
        }
        // Four keys at a time: their weights are adjacent columns of the [T, S] tiles, read in place; the rows
        // summed are the union of the rows that see each of them (the tiles are 0 elsewhere in each column).
        const bool add = h > g * rep;
        for (int64_t jb = 0; jb < d.S; jb += kRows) {
          const int64_t count = std::min(kRows, d.S - jb);
          int64_t t0 = d.T, t1 = 0;
          const float *wp[kRows], *wd[kRows];
          float *dvs[kRows], *dks[kRows];
          for (int64_t r = 0; r < count; r++) {
            const int64_t j = jb + r;
            if (vis.first[j] < vis.last[j]) {
              t0 = std::min(t0, vis.first[j]);
              t1 = std::max(t1, vis.last[j]);
            }
            wp[r] = pm + j;
            wd[r] = ds.data() + j;
            dvs[r] = dv + a.lv.At(b, j, g);
            dks[r] = dk + a.lk.At(b, j, g);
          }
          t0 = std::min(t0, t1);
          MixRows(wp, count, d.S, t0, t1, dyh, dyRow, d.hs, dvs, add);
          MixRows(wd, count, d.S, t0, t1, q + a.lq.At(b, 0, h), a.lq.row, d.hs, dks, add);
        }
      }
    }
  });
  return info.Env().Undefined();
}

}  // namespace

void AddTrainAttentionKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("trainAttention", Napi::Function::New(env, TrainAttention));
  exports.Set("trainAttentionGrad", Napi::Function::New(env, TrainAttentionGrad));
}

}  // namespace rlhf_engine
