// AdamW's update of one parameter in one pass (src/trainer/adamw.ts): the same float32 operations, in the same
// order, as the chain of tensor ops it replaces (a dozen kernels and their temporaries per parameter), so the result
// is the same to the bit (the build passes -ffp-contract=off: no fused multiply-adds).
//
//   adamW(p, g, m | null, v | null, reals, pOut, mOut, vOut), reals = [c1, beta1, c2, beta2, stepScale, epsTerm, keep]
//     m' = m·beta1 + g·c1 (g·c1 when m is null: the first step), v' = v·beta2 + (g·g)·c2 (likewise),
//     p' = p·keep − (m'·stepScale) / (sqrt(v') + epsTerm)
#include <cmath>
#include <string>

#include "engine_shared.h"

namespace rlhf_engine {
namespace {

float* Floats(const Napi::CallbackInfo& info, size_t i, const char* name, size_t n, bool optional = false) {
  if (optional && (info[i].IsNull() || info[i].IsUndefined())) return nullptr;
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.adamW: ") + name + " must be a Float32Array");
  }
  auto t = info[i].As<Napi::Float32Array>();
  if (t.ElementLength() != n) throw Napi::RangeError::New(info.Env(), std::string("engine.adamW: ") + name + " must hold as many values as the parameter");
  return t.Data();
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  if (info.Length() != 8) throw Napi::TypeError::New(info.Env(), "engine.adamW takes 8 arguments");
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "engine.adamW: p must be a Float32Array");
  const size_t n = info[0].As<Napi::TypedArray>().ElementLength();
  const float* p = Floats(info, 0, "p", n);
  const float* g = Floats(info, 1, "g", n);
  const float* m = Floats(info, 2, "m", n, true);
  const float* v = Floats(info, 3, "v", n, true);
  if (!info[4].IsArray() || info[4].As<Napi::Array>().Length() != 7) throw Napi::TypeError::New(info.Env(), "engine.adamW: reals must hold 7 numbers");
  auto r = info[4].As<Napi::Array>();
  float k[7];
  for (uint32_t i = 0; i < 7; i++) k[i] = r.Get(i).As<Napi::Number>().FloatValue();
  const float c1 = k[0], beta1 = k[1], c2 = k[2], beta2 = k[3], stepScale = k[4], epsTerm = k[5], keep = k[6];
  float* po = Floats(info, 5, "pOut", n);
  float* mo = Floats(info, 6, "mOut", n);
  float* vo = Floats(info, 7, "vOut", n);
  if ((m == nullptr) != (v == nullptr)) throw Napi::TypeError::New(info.Env(), "engine.adamW: m and v come together");
  ParallelFor(static_cast<int64_t>(n), int64_t{1} << 15, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) {
      const float g1 = g[i] * c1;
      const float g2 = (g[i] * g[i]) * c2;
      const float mi = m ? m[i] * beta1 + g1 : g1;
      const float vi = v ? v[i] * beta2 + g2 : g2;
      mo[i] = mi;
      vo[i] = vi;
      po[i] = p[i] * keep - (mi * stepScale) / (std::sqrt(vi) + epsTerm);
    }
  });
  return info.Env().Undefined();
}

}  // namespace

void AddOptimizerKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("adamW", Napi::Function::New(env, AdamW));
}

}  // namespace rlhf_engine
