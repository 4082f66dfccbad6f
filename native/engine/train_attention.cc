// Causal self-attention for training, forward and backward, in one call each per layer (src/models/ops/attention.ts,
// fusedSelfAttention): at small shapes (T 64–128, head size 32) the per-head products, head transposes and softmax
// passes of the op-by-op path cost more in calls and memory traffic than in arithmetic.
//
//   trainAttention(q, k, v, dims, layouts, bias, biasStrides, reals, mask | null, out, probs)
//   trainAttentionGrad(dy, q, k, v, dims, layouts, probs, mask | null, reals, dq, dk, dv)
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
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine_shared.h"

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

// a·b + c, fused where the CPU has FMA (the build passes -ffp-contract=off, so only written ones are fused).
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

// row[j] = Σ_c a[c]·bt[c, j] for j in [j0, j1), 16 keys at a time held in registers.
void RowTimes(const float* a, const float* bt, int64_t hs, int64_t S, int64_t j0, int64_t j1, float* row) {
  constexpr int64_t kBlock = 16;
  int64_t jb = j0;
  for (; jb + kBlock <= j1; jb += kBlock) {
    float acc[kBlock] = {};
    for (int64_t c = 0; c < hs; c++) {
      const float ac = a[c];
      const float* bc = bt + c * S + jb;
      for (int64_t u = 0; u < kBlock; u++) acc[u] = Madd(ac, bc[u], acc[u]);
    }
    for (int64_t u = 0; u < kBlock; u++) row[jb + u] = acc[u];
  }
  if (jb < j1) {
    std::fill(row + jb, row + j1, 0.0f);
    for (int64_t c = 0; c < hs; c++) {
      const float ac = a[c];
      const float* bc = bt + c * S;
      for (int64_t j = jb; j < j1; j++) row[j] = Madd(ac, bc[j], row[j]);
    }
  }
}

// out[0, hs) (+)= Σ_{n in [n0, n1)} w[n·ws]·x[n·xs + (0, hs)], zero weights skipped; the sum stays in registers for
// the usual head sizes (HS > 0), else runs over `hs` through memory.
template <int HS>
void Mix(const float* w, int64_t ws, int64_t n0, int64_t n1, const float* x, int64_t xs, int64_t hs, float* out, bool accumulate) {
  if constexpr (HS > 0) {
    float acc[HS] = {};
    for (int64_t n = n0; n < n1; n++) {
      const float wn = w[n * ws];
      if (wn == 0.0f) continue;
      const float* xn = x + n * xs;
      for (int c = 0; c < HS; c++) acc[c] = Madd(wn, xn[c], acc[c]);
    }
    if (accumulate) for (int c = 0; c < HS; c++) out[c] += acc[c];
    else for (int c = 0; c < HS; c++) out[c] = acc[c];
  } else {
    if (!accumulate) std::fill(out, out + hs, 0.0f);
    for (int64_t n = n0; n < n1; n++) {
      const float wn = w[n * ws];
      if (wn == 0.0f) continue;
      const float* xn = x + n * xs;
      for (int64_t c = 0; c < hs; c++) out[c] = Madd(wn, xn[c], out[c]);
    }
  }
}

using MixFn = void (*)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*, bool);
MixFn MixFor(int64_t hs) {
  switch (hs) {
    case 16: return Mix<16>;
    case 32: return Mix<32>;
    case 64: return Mix<64>;
    case 128: return Mix<128>;
    default: return Mix<0>;
  }
}

// A key whose bias is at most this is masked (the models' mask adds −1e9): when a row has any other key, such a
// key's probability is exactly 0 in float32 (exp of about −1e9), so its scores need not be computed.
constexpr float kHidden = -1e8f;

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
  const MixFn mix = MixFor(d.hs);
  ParallelFor(d.B * d.G, 1, [&](int64_t s, int64_t e) {
    std::vector<float> kt(static_cast<size_t>(d.hs * d.S)), dropped(static_cast<size_t>(d.S));
    for (int64_t task = s; task < e; task++) {
      const int64_t b = task / d.G, g = task % d.G;
      Transposed(k, a.lk, d, b, g, kt.data());
      for (int64_t h = g * rep; h < (g + 1) * rep; h++) {
        for (int64_t t = 0; t < d.T; t++) {
          float* p = probs + ((b * d.H + h) * d.T + t) * d.S;
          const float* br = bias + b * bst[0] + h * bst[1] + t * bst[2];
          // The visible keys lie in [j0, j1) (all of them when none is visible, as the dense softmax averages them).
          int64_t j0 = 0, j1 = d.S;
          while (j0 < d.S && br[j0 * bst[3]] <= kHidden) j0++;
          if (j0 == d.S) j0 = 0;
          else while (br[(j1 - 1) * bst[3]] <= kHidden) j1--;
          std::fill(p, p + j0, 0.0f);
          std::fill(p + j1, p + d.S, 0.0f);
          RowTimes(q + a.lq.At(b, t, h), kt.data(), d.hs, d.S, j0, j1, p);
          if (a.softcap > 0) {
            const float inner = a.scale / a.softcap;
            for (int64_t j = j0; j < j1; j++) p[j] = std::tanh(p[j] * inner) * a.softcap + br[j * bst[3]];
          } else if (bst[3] == 1) {
            for (int64_t j = j0; j < j1; j++) p[j] = p[j] * a.scale + br[j];
          } else {
            for (int64_t j = j0; j < j1; j++) p[j] = p[j] * a.scale + br[j * bst[3]];
          }
          const float m = MaxOf(p + j0, j1 - j0);
          for (int64_t j = j0; j < j1; j++) p[j] = FastExp(p[j] - m);
          const float inv = static_cast<float>(1.0 / SumToDouble(p + j0, j1 - j0));
          for (int64_t j = j0; j < j1; j++) p[j] *= inv;
          const float* w = p;
          if (mask) {
            const float* mr = mask + (p - probs);
            for (int64_t j = j0; j < j1; j++) dropped[j] = p[j] * mr[j];
            w = dropped.data();
          }
          const Layout& lv = a.lv;
          mix(w, 1, j0, j1, v + lv.At(b, 0, g), lv.row, d.hs, out + ((b * d.T + t) * d.H + h) * d.hs, false);
        }
      }
    }
  });
  return info.Env().Undefined();
}

Napi::Value TrainAttentionGrad(const Napi::CallbackInfo& info) {
  const char* fn = "trainAttentionGrad";
  if (info.Length() != 12) throw Napi::TypeError::New(info.Env(), "engine.trainAttentionGrad takes 12 arguments");
  const Args a = ParseArgs(info, 4, 5, 8, fn);
  const Shape d = a.d;
  if (Empty(d)) return info.Env().Undefined();
  const int64_t cells = d.B * d.H * d.T * d.S;
  const float* dy = FloatArray(info, 0, fn, "dy", d.B * d.T * d.H * d.hs);
  const float* q = FloatArray(info, 1, fn, "q", a.lq.Last(d.B, d.T, d.H, d.hs));
  const float* k = FloatArray(info, 2, fn, "k", a.lk.Last(d.B, d.S, d.G, d.hs));
  const float* v = FloatArray(info, 3, fn, "v", a.lv.Last(d.B, d.S, d.G, d.hs));
  const float* probs = FloatArray(info, 6, fn, "probs", cells);
  const float* mask = FloatArray(info, 7, fn, "mask", cells, true);
  float* dq = FloatArray(info, 9, fn, "dq", a.lq.Last(d.B, d.T, d.H, d.hs));
  float* dk = FloatArray(info, 10, fn, "dk", a.lk.Last(d.B, d.S, d.G, d.hs));
  float* dv = FloatArray(info, 11, fn, "dv", a.lv.Last(d.B, d.S, d.G, d.hs));
  const int64_t rep = d.H / d.G;
  const MixFn mix = MixFor(d.hs);
  const int64_t dyRow = d.H * d.hs;
  ParallelFor(d.B * d.G, 1, [&](int64_t s, int64_t e) {
    const size_t tile = static_cast<size_t>(d.T * d.S);
    std::vector<float> vt(static_cast<size_t>(d.hs * d.S)), kt(a.softcap > 0 ? static_cast<size_t>(d.hs * d.S) : 0);
    std::vector<float> ds(tile), kept(mask ? tile : 0), pdp(static_cast<size_t>(d.S)), scores(a.softcap > 0 ? static_cast<size_t>(d.S) : 0);
    std::vector<int64_t> lo(static_cast<size_t>(d.T)), hi(static_cast<size_t>(d.T));
    for (int64_t task = s; task < e; task++) {
      const int64_t b = task / d.G, g = task % d.G;
      Transposed(v, a.lv, d, b, g, vt.data());
      if (a.softcap > 0) Transposed(k, a.lk, d, b, g, kt.data());
      for (int64_t h = g * rep; h < (g + 1) * rep; h++) {
        const float* ph = probs + (b * d.H + h) * d.T * d.S;
        const float* mh = mask ? mask + (ph - probs) : nullptr;
        const float* dyh = dy + b * d.T * dyRow + h * d.hs;
        // 1. per query t: dP = (dy_t·vᵀ) ⊙ mask, dS = p ⊙ (dP − Σ dP ⊙ p)·scale over the keys where p ≠ 0 (zero
        // elsewhere, exactly), then dq_t = dS_t·k
        for (int64_t t = 0; t < d.T; t++) {
          const float* p = ph + t * d.S;
          float* dst = ds.data() + t * d.S;
          int64_t j0 = 0, j1 = d.S;
          while (j0 < d.S && p[j0] == 0.0f) j0++;
          while (j1 > j0 && p[j1 - 1] == 0.0f) j1--;
          lo[t] = j0;
          hi[t] = j1;
          std::fill(dst, dst + d.S, 0.0f);
          if (mh) for (int64_t j = 0; j < d.S; j++) kept[t * d.S + j] = p[j] * mh[t * d.S + j];
          if (j0 == j1) {
            std::fill(dq + a.lq.At(b, t, h), dq + a.lq.At(b, t, h) + d.hs, 0.0f);
            continue;
          }
          RowTimes(dyh + t * dyRow, vt.data(), d.hs, d.S, j0, j1, dst);
          if (mh) for (int64_t j = j0; j < j1; j++) dst[j] *= mh[t * d.S + j];
          for (int64_t j = j0; j < j1; j++) pdp[j] = p[j] * dst[j];
          const float dot = static_cast<float>(SumToDouble(pdp.data() + j0, j1 - j0));
          for (int64_t j = j0; j < j1; j++) dst[j] = p[j] * (dst[j] - dot) * a.scale;
          const float* qr = q + a.lq.At(b, t, h);
          if (a.softcap > 0) {
            RowTimes(qr, kt.data(), d.hs, d.S, j0, j1, scores.data());
            const float inner = a.scale / a.softcap;
            for (int64_t j = j0; j < j1; j++) {
              const float th = std::tanh(scores[j] * inner);
              dst[j] *= 1.0f - th * th;
            }
          }
          mix(dst, 1, j0, j1, k + a.lk.At(b, 0, g), a.lk.row, d.hs, dq + a.lq.At(b, t, h), false);
        }
        // 2. per key j: dv_j (+)= Σ_t (p ⊙ mask)_tj·dy_t, dk_j (+)= Σ_t dS_tj·q_t (the first query head of the group
        // writes, the others add)
        const float* pm = mh ? kept.data() : ph;
        const bool add = h > g * rep;
        for (int64_t j = 0; j < d.S; j++) {
          int64_t t0 = 0;  // queries that see key j start at the first t with lo ≤ j < hi; causal rows: t ≥ j
          while (t0 < d.T && !(lo[t0] <= j && j < hi[t0])) t0++;
          int64_t t1 = d.T;
          while (t1 > t0 && !(lo[t1 - 1] <= j && j < hi[t1 - 1])) t1--;
          mix(pm + j, d.S, t0, t1, dyh, dyRow, d.hs, dv + a.lv.At(b, j, g), add);
          mix(ds.data() + j, d.S, t0, t1, q + a.lq.At(b, 0, h), a.lq.row, d.hs, dk + a.lk.At(b, j, g), add);
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
