// Fused training kernels of the `native` backend: formulas the models otherwise spell as several elementwise and
// reduction ops, each a pass over memory (at tiny-chat's shape those passes, not the arithmetic, were the cost).
// Each reads its inputs once and writes its outputs once; sums over a row run in double, as the cpu kernels' do.
// The ops in src/models/ops choose these on the native backend and keep their tfjs decomposition elsewhere.
//
//   rmsNorm(x, w, rows, C, eps, y, rstd)                      y = x·rstd·w, rstd = 1/√(mean(x²) + eps) per row
//   rmsNormGrad(dy, x, w, rstd, rows, C, dx, dw)              dx, and dw = Σ_rows dy·x·rstd
//   layerNorm(x, w, b | null, rows, C, eps, y, mean, rstd)    y = (x − mean)·rstd·w (+ b)
//   layerNormGrad(dy, x, w, mean, rstd, rows, C, dx, dw, db | null)
//   activation(kind, x, out)                                  kind 0: silu x·σ(x); 1: gelu_tanh x·σ(2u); 2: gelu x·Φ(x);
//                                                             3: relu max(x, 0)
//   activationGrad(kind, x, dy, dx)
//   gatedActivation(kind, gate, up, out)                      act(gate)·up
//   gatedActivationGrad(kind, gate, up, dy, dgate, dup)
//   biasedSoftmax(x, lead, T, S, scale, bias, biasStrides, out)
//                                                             softmax over S of x·scale + bias, x [lead.., T, S] with
//                                                             lead = [d0, d1]; bias broadcast by strides [s0, s1, sT, sS]
//   softmaxGrad(p, dp, rows, S, scale, dx)                    dx = p ⊙ (dp − Σ_S dp ⊙ p)·scale
//   rotary(x, B, H, T, hs, cos, sin, tableBatch, transpose, out)
//                                                             x [B, H, T, hs], cos/sin [tableBatch, T, hs]:
//                                                             x·cos + rotate_half(x)·sin, or (transpose) the gradient
//                                                             map dy·cos + rotate_halfᵀ(dy·sin)
//   dropoutMask(state [c, s0, s1, s2], keepProb, out)          tf.dropout's scaled mask: floor(u + keep)/keep, u
//                                                             from the Alea generator tfjs seeds from the seed
//   crossEntropyRows(logits, rows, V, targets, weights, grad | null) → Σ_r w_r·(lse_r − logits[r, t_r]);
//                                                             grad = (softmax − onehot(t))·w per row (grad may be
//                                                             the logits' own array)
//   logProbEntropyRows(logits, rows, V, targets, d | null, out)
//                                                             d null: out [rows, 2] = (z_t − lse, lse − Σ p·z) per row;
//                                                             else out [rows, V] = dz for d [rows, 2] (of logp and
//                                                             entropy): dlogp·(onehot − p) − dH·p⊙(z − lse + H) (out
//                                                             may be the logits' own array)
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "engine_shared.h"

namespace rlhf_engine {
namespace {

// Rows per chunk for row-wise kernels: about 32k elements, so small tensors stay on one thread.
int64_t RowGrain(int64_t cols) { return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, cols)); }

[[noreturn]] void Fail(Napi::Env env, const char* fn, const std::string& what) {
  throw Napi::RangeError::New(env, std::string("engine.") + fn + ": " + what);
}

int64_t Count(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0) Fail(info.Env(), fn, std::string(name) + " must be a non-negative integer");
  return static_cast<int64_t>(v);
}

// A Float32Array (or Int32Array for `ints`) argument holding at least `elems` elements, or null when `optional`.
template <class T>
T* Array(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t elems, bool optional = false) {
  if (optional && (info[i].IsNull() || info[i].IsUndefined())) return nullptr;
  if (!info[i].IsTypedArray()) throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be a TypedArray");
  auto t = info[i].As<Napi::TypedArray>();
  const napi_typedarray_type want = std::is_same<T, int32_t>::value ? napi_int32_array : napi_float32_array;
  if (t.TypedArrayType() != want) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + (want == napi_int32_array ? " must be an Int32Array" : " must be a Float32Array"));
  }
  if (static_cast<int64_t>(t.ElementLength()) < elems) {
    Fail(info.Env(), fn, std::string(name) + " needs " + std::to_string(elems) + " elements but holds " + std::to_string(t.ElementLength()));
  }
  return reinterpret_cast<T*>(static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset());
}

float* Floats(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name, int64_t elems, bool optional = false) {
  return Array<float>(info, i, fn, name, elems, optional);
}

float Eps(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": eps must be a number");
  return info[i].As<Napi::Number>().FloatValue();
}

void Arity(const Napi::CallbackInfo& info, size_t n, const char* fn) {
  if (info.Length() != n) throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + " takes " + std::to_string(n) + " arguments");
}

inline float Sigmoid(float v) { return 1.0f / (1.0f + FastExp(-v)); }

// Column sums Σ_rows f(row, c) into out[C] (double partial sums per chunk of rows, added in chunk order, so the
// result does not depend on which thread ran which chunk).
template <class F>
void ColumnSums(int64_t rows, int64_t C, float* out, F f) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(Threads(), rows / std::max<int64_t>(1, RowGrain(C)) ));
  std::vector<double> part(static_cast<size_t>(chunks * C), 0.0);
  ParallelFor(chunks, 1, [&](int64_t s, int64_t e) {
    for (int64_t k = s; k < e; k++) {
      double* acc = part.data() + k * C;
      const int64_t r0 = rows * k / chunks, r1 = rows * (k + 1) / chunks;
      for (int64_t r = r0; r < r1; r++) f(r, acc);
    }
  });
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int64_t k = 0; k < chunks; k++) s += part[k * C + c];
    out[c] = static_cast<float>(s);
  }
}

// ---- RMSNorm ----

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Arity(info, 7, "rmsNorm");
  const int64_t rows = Count(info, 2, "rmsNorm", "rows"), C = Count(info, 3, "rmsNorm", "C");
  const float* x = Floats(info, 0, "rmsNorm", "x", rows * C);
  const float* w = Floats(info, 1, "rmsNorm", "w", C);
  const float eps = Eps(info, 4, "rmsNorm");
  float* y = Floats(info, 5, "rmsNorm", "y", rows * C);
  float* rstd = Floats(info, 6, "rmsNorm", "rstd", rows);
  ParallelFor(rows, RowGrain(C), [&](int64_t s, int64_t e) {
    std::vector<float> sq(static_cast<size_t>(C));
    for (int64_t r = s; r < e; r++) {
      const float* xr = x + r * C;
      for (int64_t c = 0; c < C; c++) sq[c] = xr[c] * xr[c];
      const float rs = 1.0f / std::sqrt(static_cast<float>(SumToDouble(sq.data(), C) / static_cast<double>(C)) + eps);
      rstd[r] = rs;
      float* yr = y + r * C;
      for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * rs * w[c];
    }
  });
  return info.Env().Undefined();
}

Napi::Value RmsNormGrad(const Napi::CallbackInfo& info) {
  Arity(info, 8, "rmsNormGrad");
  const int64_t rows = Count(info, 4, "rmsNormGrad", "rows"), C = Count(info, 5, "rmsNormGrad", "C");
  const float* dy = Floats(info, 0, "rmsNormGrad", "dy", rows * C);
  const float* x = Floats(info, 1, "rmsNormGrad", "x", rows * C);
  const float* w = Floats(info, 2, "rmsNormGrad", "w", C);
  const float* rstd = Floats(info, 3, "rmsNormGrad", "rstd", rows);
  float* dx = Floats(info, 6, "rmsNormGrad", "dx", rows * C);
  float* dw = Floats(info, 7, "rmsNormGrad", "dw", C);
  // dx = rstd·(dx̂ − x̂·mean(dx̂·x̂)), dx̂ = dy·w, x̂ = x·rstd.
  ParallelFor(rows, RowGrain(C), [&](int64_t s, int64_t e) {
    std::vector<float> xh(static_cast<size_t>(C)), prod(static_cast<size_t>(C));
    for (int64_t r = s; r < e; r++) {
      const float *xr = x + r * C, *dyr = dy + r * C;
      const float rs = rstd[r];
      for (int64_t c = 0; c < C; c++) {
        xh[c] = xr[c] * rs;
        prod[c] = dyr[c] * w[c] * xh[c];
      }
      const float m = static_cast<float>(SumToDouble(prod.data(), C) / static_cast<double>(C));
      float* dxr = dx + r * C;
      for (int64_t c = 0; c < C; c++) dxr[c] = (dyr[c] * w[c] - xh[c] * m) * rs;
    }
  });
  ColumnSums(rows, C, dw, [&](int64_t r, double* acc) {
    const float *xr = x + r * C, *dyr = dy + r * C;
    const float rs = rstd[r];
    for (int64_t c = 0; c < C; c++) acc[c] += dyr[c] * (xr[c] * rs);
  });
  return info.Env().Undefined();
}

// ---- LayerNorm (biased variance, as torch) ----

Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  Arity(info, 9, "layerNorm");
  const int64_t rows = Count(info, 3, "layerNorm", "rows"), C = Count(info, 4, "layerNorm", "C");
  const float* x = Floats(info, 0, "layerNorm", "x", rows * C);
  const float* w = Floats(info, 1, "layerNorm", "w", C);
  const float* b = Floats(info, 2, "layerNorm", "b", C, true);
  const float eps = Eps(info, 5, "layerNorm");
  float* y = Floats(info, 6, "layerNorm", "y", rows * C);
  float* mean = Floats(info, 7, "layerNorm", "mean", rows);
  float* rstd = Floats(info, 8, "layerNorm", "rstd", rows);
  ParallelFor(rows, RowGrain(C), [&](int64_t s, int64_t e) {
    std::vector<float> d(static_cast<size_t>(C));
    for (int64_t r = s; r < e; r++) {
      const float* xr = x + r * C;
      const float mu = static_cast<float>(SumToDouble(xr, C) / static_cast<double>(C));
      for (int64_t c = 0; c < C; c++) d[c] = (xr[c] - mu) * (xr[c] - mu);
      const float rs = 1.0f / std::sqrt(static_cast<float>(SumToDouble(d.data(), C) / static_cast<double>(C)) + eps);
      mean[r] = mu;
      rstd[r] = rs;
      float* yr = y + r * C;
      if (b) for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * w[c] + b[c];
      else for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * w[c];
    }
  });
  return info.Env().Undefined();
}

Napi::Value LayerNormGrad(const Napi::CallbackInfo& info) {
  Arity(info, 10, "layerNormGrad");
  const int64_t rows = Count(info, 5, "layerNormGrad", "rows"), C = Count(info, 6, "layerNormGrad", "C");
  const float* dy = Floats(info, 0, "layerNormGrad", "dy", rows * C);
  const float* x = Floats(info, 1, "layerNormGrad", "x", rows * C);
  const float* w = Floats(info, 2, "layerNormGrad", "w", C);
  const float* mean = Floats(info, 3, "layerNormGrad", "mean", rows);
  const float* rstd = Floats(info, 4, "layerNormGrad", "rstd", rows);
  float* dx = Floats(info, 7, "layerNormGrad", "dx", rows * C);
  float* dw = Floats(info, 8, "layerNormGrad", "dw", C);
  float* db = Floats(info, 9, "layerNormGrad", "db", C, true);
  // dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dy·w.
  ParallelFor(rows, RowGrain(C), [&](int64_t s, int64_t e) {
    std::vector<float> xh(static_cast<size_t>(C)), g(static_cast<size_t>(C)), prod(static_cast<size_t>(C));
    for (int64_t r = s; r < e; r++) {
      const float *xr = x + r * C, *dyr = dy + r * C;
      const float mu = mean[r], rs = rstd[r];
      for (int64_t c = 0; c < C; c++) {
        xh[c] = (xr[c] - mu) * rs;
        g[c] = dyr[c] * w[c];
        prod[c] = g[c] * xh[c];
      }
      const float m1 = static_cast<float>(SumToDouble(g.data(), C) / static_cast<double>(C));
      const float m2 = static_cast<float>(SumToDouble(prod.data(), C) / static_cast<double>(C));
      float* dxr = dx + r * C;
      for (int64_t c = 0; c < C; c++) dxr[c] = (g[c] - m1 - xh[c] * m2) * rs;
    }
  });
  ColumnSums(rows, C, dw, [&](int64_t r, double* acc) {
    const float *xr = x + r * C, *dyr = dy + r * C;
    const float mu = mean[r], rs = rstd[r];
    for (int64_t c = 0; c < C; c++) acc[c] += dyr[c] * ((xr[c] - mu) * rs);
  });
  if (db) ColumnSums(rows, C, db, [&](int64_t r, double* acc) {
    const float* dyr = dy + r * C;
    for (int64_t c = 0; c < C; c++) acc[c] += dyr[c];
  });
  return info.Env().Undefined();
}

// ---- activations: value and derivative of each kind ----

constexpr float kTwoSqrt2OverPi = 1.5957691216057308f;  // 2·√(2/π)
constexpr float kGeluA = 0.044715f;

constexpr float kSqrtHalf = 0.70710678118654752f;       // 1/√2
constexpr float kInvSqrt2Pi = 0.39894228040143268f;     // 1/√(2π)

enum ActKind { kSilu = 0, kGeluTanh = 1, kGeluErf = 2, kRelu = 3, kActKinds };

// f(v) = v·σ(k(v)): silu k = v, gelu_tanh k = 2·√(2/π)·(v + a·v³); exact gelu f(v) = v·Φ(v).
template <int K>
inline float ActValue(float v) {
  if (K == kRelu) return v < 0.0f ? 0.0f : v;  // NaN stays NaN, as tf.relu
  if (K == kSilu) return v * Sigmoid(v);
  if (K == kGeluErf) return 0.5f * v * (1.0f + FastErf(v * kSqrtHalf));
  return v * Sigmoid(v * (v * v * kGeluA + 1.0f) * kTwoSqrt2OverPi);
}

// f'(v) = s + v·s·(1 − s)·k'(v); exact gelu Φ(v) + v·φ(v).
template <int K>
inline float ActSlope(float v) {
  if (K == kRelu) return std::isnan(v) ? v : (v > 0.0f ? 1.0f : 0.0f);  // tfjs's gradient: dy·step(x)
  if (K == kGeluErf) return 0.5f * (1.0f + FastErf(v * kSqrtHalf)) + v * kInvSqrt2Pi * FastExp(-0.5f * v * v);
  if (K == kSilu) {
    const float s = Sigmoid(v);
    return s * (1.0f + v * (1.0f - s));
  }
  const float v2 = v * v;
  const float s = Sigmoid(v * (v2 * kGeluA + 1.0f) * kTwoSqrt2OverPi);
  return s + v * (s * (1.0f - s)) * ((v2 * (3.0f * kGeluA) + 1.0f) * kTwoSqrt2OverPi);
}

constexpr int64_t kElemGrain = 1 << 15;

int64_t Kind(const Napi::CallbackInfo& info, const char* fn) {
  const int64_t k = Count(info, 0, fn, "kind");
  if (k >= kActKinds) Fail(info.Env(), fn, "unknown activation kind " + std::to_string(k));
  return k;
}

int64_t Elements(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (!info[i].IsTypedArray()) throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be a TypedArray");
  return static_cast<int64_t>(info[i].As<Napi::TypedArray>().ElementLength());
}

template <int K>
void ActForward(const float* x, const float* up, float* o, int64_t n) {
  ParallelFor(n, kElemGrain, [&](int64_t s, int64_t e) {
    if (up) for (int64_t i = s; i < e; i++) o[i] = ActValue<K>(x[i]) * up[i];
    else for (int64_t i = s; i < e; i++) o[i] = ActValue<K>(x[i]);
  });
}

template <int K>
void ActBackward(const float* x, const float* up, const float* dy, float* dx, float* dup, int64_t n) {
  ParallelFor(n, kElemGrain, [&](int64_t s, int64_t e) {
    if (up) {
      for (int64_t i = s; i < e; i++) {
        dx[i] = dy[i] * up[i] * ActSlope<K>(x[i]);
        dup[i] = dy[i] * ActValue<K>(x[i]);
      }
    } else {
      for (int64_t i = s; i < e; i++) dx[i] = dy[i] * ActSlope<K>(x[i]);
    }
  });
}

Napi::Value Activation(const Napi::CallbackInfo& info) {
  Arity(info, 3, "activation");
  const int64_t kind = Kind(info, "activation");
  const int64_t n = Elements(info, 1, "activation", "x");
  const float* x = Floats(info, 1, "activation", "x", n);
  float* o = Floats(info, 2, "activation", "out", n);
  if (kind == kSilu) ActForward<kSilu>(x, nullptr, o, n);
  else if (kind == kGeluErf) ActForward<kGeluErf>(x, nullptr, o, n);
  else if (kind == kRelu) ActForward<kRelu>(x, nullptr, o, n);
  else ActForward<kGeluTanh>(x, nullptr, o, n);
  return info.Env().Undefined();
}

Napi::Value ActivationGrad(const Napi::CallbackInfo& info) {
  Arity(info, 4, "activationGrad");
  const int64_t kind = Kind(info, "activationGrad");
  const int64_t n = Elements(info, 1, "activationGrad", "x");
  const float* x = Floats(info, 1, "activationGrad", "x", n);
  const float* dy = Floats(info, 2, "activationGrad", "dy", n);
  float* dx = Floats(info, 3, "activationGrad", "dx", n);
  if (kind == kSilu) ActBackward<kSilu>(x, nullptr, dy, dx, nullptr, n);
  else if (kind == kGeluErf) ActBackward<kGeluErf>(x, nullptr, dy, dx, nullptr, n);
  else if (kind == kRelu) ActBackward<kRelu>(x, nullptr, dy, dx, nullptr, n);
  else ActBackward<kGeluTanh>(x, nullptr, dy, dx, nullptr, n);
  return info.Env().Undefined();
}

Napi::Value GatedActivation(const Napi::CallbackInfo& info) {
  Arity(info, 4, "gatedActivation");
  const int64_t kind = Kind(info, "gatedActivation");
  const int64_t n = Elements(info, 1, "gatedActivation", "gate");
  const float* g = Floats(info, 1, "gatedActivation", "gate", n);
  const float* u = Floats(info, 2, "gatedActivation", "up", n);
  float* o = Floats(info, 3, "gatedActivation", "out", n);
  if (kind == kSilu) ActForward<kSilu>(g, u, o, n);
  else if (kind == kGeluErf) ActForward<kGeluErf>(g, u, o, n);
  else if (kind == kRelu) ActForward<kRelu>(g, u, o, n);
  else ActForward<kGeluTanh>(g, u, o, n);
  return info.Env().Undefined();
}

Napi::Value GatedActivationGrad(const Napi::CallbackInfo& info) {
  Arity(info, 6, "gatedActivationGrad");
  const int64_t kind = Kind(info, "gatedActivationGrad");
  const int64_t n = Elements(info, 1, "gatedActivationGrad", "gate");
  const float* g = Floats(info, 1, "gatedActivationGrad", "gate", n);
  const float* u = Floats(info, 2, "gatedActivationGrad", "up", n);
  const float* dy = Floats(info, 3, "gatedActivationGrad", "dy", n);
  float* dg = Floats(info, 4, "gatedActivationGrad", "dgate", n);
  float* du = Floats(info, 5, "gatedActivationGrad", "dup", n);
  if (kind == kSilu) ActBackward<kSilu>(g, u, dy, dg, du, n);
  else if (kind == kGeluErf) ActBackward<kGeluErf>(g, u, dy, dg, du, n);
  else if (kind == kRelu) ActBackward<kRelu>(g, u, dy, dg, du, n);
  else ActBackward<kGeluTanh>(g, u, dy, dg, du, n);
  return info.Env().Undefined();
}

// ---- cross-entropy over rows of logits ----

Napi::Value CrossEntropyRows(const Napi::CallbackInfo& info) {
  Arity(info, 6, "crossEntropyRows");
  const int64_t rows = Count(info, 1, "crossEntropyRows", "rows"), V = Count(info, 2, "crossEntropyRows", "V");
  const float* z = Floats(info, 0, "crossEntropyRows", "logits", rows * V);
  const int32_t* t = Array<int32_t>(info, 3, "crossEntropyRows", "targets", rows);
  const float* wt = Floats(info, 4, "crossEntropyRows", "weights", rows);
  float* grad = Floats(info, 5, "crossEntropyRows", "grad", rows * V, true);
  for (int64_t r = 0; r < rows; r++) {
    if (t[r] < 0 || t[r] >= V) Fail(info.Env(), "crossEntropyRows", "target " + std::to_string(t[r]) + " of row " + std::to_string(r) + " is not in [0, " + std::to_string(V - 1) + "]");
  }
  std::vector<double> loss(static_cast<size_t>(rows));
  ParallelFor(rows, RowGrain(V), [&](int64_t s, int64_t e) {
    std::vector<float> scratch(grad ? 0 : static_cast<size_t>(V));
    for (int64_t r = s; r < e; r++) {
      const float* zr = z + r * V;
      float* er = grad ? grad + r * V : scratch.data();
      // A NaN logit leaves the max finite but makes its exponential, the sum, the loss and the gradient NaN.
      const float m = MaxOf(zr, V);
      const float picked = zr[t[r]];  // read first: grad may be the logits themselves
      for (int64_t c = 0; c < V; c++) er[c] = FastExp(zr[c] - m);
      const double sum = SumToDouble(er, V);
      const double lse = static_cast<double>(m) + std::log(sum);
      loss[r] = static_cast<double>(wt[r]) * (lse - static_cast<double>(picked));
      if (grad) {
        const float scale = static_cast<float>(static_cast<double>(wt[r]) / sum);
        for (int64_t c = 0; c < V; c++) er[c] *= scale;
        er[t[r]] -= wt[r];
      }
    }
  });
  double total = 0;
  for (double l : loss) total += l;
  return Napi::Number::New(info.Env(), total);
}

// Per-token log-probability of the target and entropy of each row's distribution (PPO's, GRPO's and DPO's log-probs
// straight from a chunk of logits), or their logits gradient: one pass for the max, one for Σe and Σe·z, and for the
// gradient one writing dz, instead of the dozen [rows, V] tensors of the decomposition.
Napi::Value LogProbEntropyRows(const Napi::CallbackInfo& info) {
  Arity(info, 6, "logProbEntropyRows");
  const int64_t rows = Count(info, 1, "logProbEntropyRows", "rows"), V = Count(info, 2, "logProbEntropyRows", "V");
  const float* z = Floats(info, 0, "logProbEntropyRows", "logits", rows * V);
  const int32_t* t = Array<int32_t>(info, 3, "logProbEntropyRows", "targets", rows);
  const float* d = Floats(info, 4, "logProbEntropyRows", "d", rows * 2, true);
  float* out = Floats(info, 5, "logProbEntropyRows", "out", d ? rows * V : rows * 2);
  for (int64_t r = 0; r < rows; r++) {
    if (t[r] < 0 || t[r] >= V) Fail(info.Env(), "logProbEntropyRows", "target " + std::to_string(t[r]) + " of row " + std::to_string(r) + " is not in [0, " + std::to_string(V - 1) + "]");
  }
  ParallelFor(rows, RowGrain(V), [&](int64_t s, int64_t e) {
    std::vector<float> ex(static_cast<size_t>(V));
    for (int64_t r = s; r < e; r++) {
      const float* zr = z + r * V;
      const float m = MaxOf(zr, V);
      const float picked = zr[t[r]];  // read first: out may be the logits themselves
      for (int64_t c = 0; c < V; c++) ex[static_cast<size_t>(c)] = FastExp(zr[c] - m);
      const double sum = SumToDouble(ex.data(), V), sz = DotToDouble(ex.data(), zr, V);
      const double lse = static_cast<double>(m) + std::log(sum);
      const double H = lse - sz / sum;
      if (!d) {
        out[2 * r] = static_cast<float>(static_cast<double>(picked) - lse);
        out[2 * r + 1] = static_cast<float>(H);
        continue;
      }
      // dz_c = −p_c·(dlogp + dH·(z_c − lse + H)), then + dlogp at the target; z_c − lse + H as (z_c − m) + (H − log Σe),
      // two terms without the cancellation of large logits against lse
      const float dlogp = d[2 * r], dH = d[2 * r + 1];
      const float b = static_cast<float>(H - std::log(sum));
      const float inv = static_cast<float>(1.0 / sum);
      float* o = out + r * V;
      for (int64_t c = 0; c < V; c++) o[c] = -(ex[static_cast<size_t>(c)] * inv) * (dlogp + dH * ((zr[c] - m) + b));
      o[t[r]] += dlogp;
    }
  });
  return info.Env().Undefined();
}

// ---- softmax with a scale and an additive (mask) bias, and the softmax gradient ----

Napi::Value BiasedSoftmax(const Napi::CallbackInfo& info) {
  Arity(info, 8, "biasedSoftmax");
  if (!info[1].IsArray() || !info[6].IsArray()) throw Napi::TypeError::New(info.Env(), "engine.biasedSoftmax: lead and biasStrides must be arrays");
  auto lead = info[1].As<Napi::Array>(), bst = info[6].As<Napi::Array>();
  if (lead.Length() != 2 || bst.Length() != 4) Fail(info.Env(), "biasedSoftmax", "lead has 2 dims and biasStrides 4");
  const int64_t d0 = static_cast<int64_t>(lead.Get(0u).As<Napi::Number>().DoubleValue());
  const int64_t d1 = static_cast<int64_t>(lead.Get(1u).As<Napi::Number>().DoubleValue());
  const int64_t T = Count(info, 2, "biasedSoftmax", "T"), S = Count(info, 3, "biasedSoftmax", "S");
  if (d0 < 0 || d1 < 0) Fail(info.Env(), "biasedSoftmax", "lead dims must be non-negative");
  int64_t st[4];
  int64_t biasLast = 0;
  const int64_t dims[4] = {d0, d1, T, S};
  for (uint32_t k = 0; k < 4; k++) {
    st[k] = static_cast<int64_t>(bst.Get(k).As<Napi::Number>().DoubleValue());
    if (st[k] < 0) Fail(info.Env(), "biasedSoftmax", "negative bias stride");
    if (dims[k] > 0) biasLast += (dims[k] - 1) * st[k];
  }
  const int64_t rows = d0 * d1 * T;
  const float* x = Floats(info, 0, "biasedSoftmax", "x", rows * S);
  if (!info[4].IsNumber()) throw Napi::TypeError::New(info.Env(), "engine.biasedSoftmax: scale must be a number");
  const float scale = info[4].As<Napi::Number>().FloatValue();
  const float* bias = Floats(info, 5, "biasedSoftmax", "bias", rows * S == 0 ? 0 : biasLast + 1);
  float* out = Floats(info, 7, "biasedSoftmax", "out", rows * S);
  ParallelFor(rows, RowGrain(S), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; r++) {
      const int64_t t = r % T, h = (r / T) % d1, b = r / (T * d1);
      const float* br = bias + b * st[0] + h * st[1] + t * st[2];
      const float* xr = x + r * S;
      float* o = out + r * S;
      if (st[3] == 1) for (int64_t c = 0; c < S; c++) o[c] = xr[c] * scale + br[c];
      else for (int64_t c = 0; c < S; c++) o[c] = xr[c] * scale + br[c * st[3]];
      const float m = MaxOf(o, S);
      for (int64_t c = 0; c < S; c++) o[c] = FastExp(o[c] - m);
      const float inv = static_cast<float>(1.0 / SumToDouble(o, S));
      for (int64_t c = 0; c < S; c++) o[c] *= inv;
    }
  });
  return info.Env().Undefined();
}

Napi::Value SoftmaxGrad(const Napi::CallbackInfo& info) {
  Arity(info, 6, "softmaxGrad");
  const int64_t rows = Count(info, 2, "softmaxGrad", "rows"), S = Count(info, 3, "softmaxGrad", "S");
  const float* p = Floats(info, 0, "softmaxGrad", "p", rows * S);
  const float* dp = Floats(info, 1, "softmaxGrad", "dp", rows * S);
  if (!info[4].IsNumber()) throw Napi::TypeError::New(info.Env(), "engine.softmaxGrad: scale must be a number");
  const float scale = info[4].As<Napi::Number>().FloatValue();
  float* dx = Floats(info, 5, "softmaxGrad", "dx", rows * S);
  ParallelFor(rows, RowGrain(S), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; r++) {
      const float *pr = p + r * S, *dr = dp + r * S;
      float* o = dx + r * S;
      for (int64_t c = 0; c < S; c++) o[c] = pr[c] * dr[c];
      const float dot = static_cast<float>(SumToDouble(o, S));
      for (int64_t c = 0; c < S; c++) o[c] = pr[c] * (dr[c] - dot) * scale;
    }
  });
  return info.Env().Undefined();
}

// ---- rotary position embedding (rotate_half layout) ----

Napi::Value Rotary(const Napi::CallbackInfo& info) {
  Arity(info, 10, "rotary");
  const int64_t B = Count(info, 1, "rotary", "B"), H = Count(info, 2, "rotary", "H"), T = Count(info, 3, "rotary", "T");
  const int64_t hs = Count(info, 4, "rotary", "hs"), tb = Count(info, 7, "rotary", "tableBatch");
  if (hs % 2 != 0) Fail(info.Env(), "rotary", "hs must be even");
  if (tb != 1 && tb != B) Fail(info.Env(), "rotary", "tableBatch must be 1 or B");
  const float* x = Floats(info, 0, "rotary", "x", B * H * T * hs);
  const float* cs = Floats(info, 5, "rotary", "cos", tb * T * hs);
  const float* sn = Floats(info, 6, "rotary", "sin", tb * T * hs);
  const bool transpose = info[8].ToBoolean();
  float* out = Floats(info, 9, "rotary", "out", B * H * T * hs);
  const int64_t h2 = hs / 2;
  ParallelFor(B * H * T, RowGrain(hs), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; r++) {
      const int64_t t = r % T, b = r / (H * T);
      const float* c = cs + ((tb == 1 ? 0 : b) * T + t) * hs;
      const float* si = sn + ((tb == 1 ? 0 : b) * T + t) * hs;
      const float* xr = x + r * hs;
      float* o = out + r * hs;
      if (!transpose) {
        for (int64_t j = 0; j < h2; j++) o[j] = xr[j] * c[j] + (-xr[j + h2]) * si[j];
        for (int64_t j = h2; j < hs; j++) o[j] = xr[j] * c[j] + xr[j - h2] * si[j];
      } else {
        for (int64_t j = 0; j < h2; j++) o[j] = xr[j] * c[j] + xr[j + h2] * si[j + h2];
        for (int64_t j = h2; j < hs; j++) o[j] = xr[j] * c[j] + -(xr[j - h2] * si[j - h2]);
      }
    }
  });
  return info.Env().Undefined();
}

// ---- dropout masks, bit for bit those tf.dropout makes on ones ----

// tfjs draws dropout's uniforms from seedrandom's Alea (state from the seed string, set up on the JS side); this
// steps it in the same double arithmetic (no FMA contraction: binding.gyp sets -ffp-contract=off), stores each u as
// float32 as tfjs's buffer does, then forms floor(u + keep) / keep in float32 as its add, floor and div kernels do.
Napi::Value DropoutMask(const Napi::CallbackInfo& info) {
  Arity(info, 3, "dropoutMask");
  if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() != 4) Fail(info.Env(), "dropoutMask", "state must be [c, s0, s1, s2]");
  auto st = info[0].As<Napi::Array>();
  double c = st.Get(0u).As<Napi::Number>().DoubleValue(), s0 = st.Get(1u).As<Napi::Number>().DoubleValue();
  double s1 = st.Get(2u).As<Napi::Number>().DoubleValue(), s2 = st.Get(3u).As<Napi::Number>().DoubleValue();
  if (!info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "engine.dropoutMask: keepProb must be a number");
  const float keep = info[1].As<Napi::Number>().FloatValue();
  const int64_t n = Elements(info, 2, "dropoutMask", "out");
  float* out = Floats(info, 2, "dropoutMask", "out", n);
  // Alea's state is always whole multiples of 2^-32 in [0, 1) (Mash's outputs, their differences, and each step's
  // fractional part) with an integer carry, and 2091639·s0 + c·2^-32 is then exact in double: the generator is the
  // integer multiply-with-carry x' = (a·x + c) mod 2^32, c' = (a·x + c) >> 32, whose only serial dependency is one add
  // and one shift per step (the double form waits on a multiply, an add and two conversions). u = x'·2^-32 rounds to
  // float32 as the double does, 2^-32 being a power of two.
  const double scale = 4294967296.0;  // 2^32
  const auto whole = [&](double s) { return s >= 0 && s < 1 && std::floor(s * scale) == s * scale; };
  if (whole(s0) && whole(s1) && whole(s2) && c >= 0 && c <= 2091639.0 && std::floor(c) == c) {
    uint32_t x0 = static_cast<uint32_t>(s0 * scale), x1 = static_cast<uint32_t>(s1 * scale), x2 = static_cast<uint32_t>(s2 * scale);
    uint64_t carry = static_cast<uint64_t>(c);
    for (int64_t i = 0; i < n; i++) {
      const uint64_t t = 2091639ull * x0 + carry;
      x0 = x1;
      x1 = x2;
      x2 = static_cast<uint32_t>(t);
      carry = t >> 32;
      const float u = static_cast<float>(x2) * 2.3283064365386963e-10f;  // 2^-32
      out[i] = std::floor(u + keep) / keep;
    }
    return info.Env().Undefined();
  }
  for (int64_t i = 0; i < n; i++) {
    const double t = 2091639.0 * s0 + c * 2.3283064365386963e-10;  // 2^-32
    s0 = s1;
    s1 = s2;
    c = static_cast<double>(static_cast<int32_t>(t));  // t | 0, t ≥ 0
    s2 = t - c;
    const float u = static_cast<float>(s2);
    out[i] = std::floor(u + keep) / keep;
  }
  return info.Env().Undefined();
}

}  // namespace

void AddFusedKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm));
  exports.Set("rmsNormGrad", Napi::Function::New(env, RmsNormGrad));
  exports.Set("layerNorm", Napi::Function::New(env, LayerNorm));
  exports.Set("layerNormGrad", Napi::Function::New(env, LayerNormGrad));
  exports.Set("activation", Napi::Function::New(env, Activation));
  exports.Set("activationGrad", Napi::Function::New(env, ActivationGrad));
  exports.Set("gatedActivation", Napi::Function::New(env, GatedActivation));
  exports.Set("gatedActivationGrad", Napi::Function::New(env, GatedActivationGrad));
  exports.Set("biasedSoftmax", Napi::Function::New(env, BiasedSoftmax));
  exports.Set("softmaxGrad", Napi::Function::New(env, SoftmaxGrad));
  exports.Set("rotary", Napi::Function::New(env, Rotary));
  exports.Set("dropoutMask", Napi::Function::New(env, DropoutMask));
  exports.Set("crossEntropyRows", Napi::Function::New(env, CrossEntropyRows));
  exports.Set("logProbEntropyRows", Napi::Function::New(env, LogProbEntropyRows));
  AddTrainAttentionKernels(env, exports);
  AddOptimizerKernels(env, exports);
}

}  // namespace rlhf_engine
