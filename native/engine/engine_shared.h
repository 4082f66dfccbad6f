// What native/engine's source files share: the thread pool (engine_binding.cc) and a vectorisable exp.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

namespace rlhf_engine {

// Runs fn(begin, end) over [0, n) in chunks of at least `grain` items, on the engine's threads.
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);
int Threads();

// Adds the inference attention over a KV cache (decode_attention.cc) to the addon's exports.
void AddDecodeKernels(Napi::Env env, Napi::Object exports);
// Adds the fused training kernels (fused_kernels.cc) to the addon's exports.
void AddFusedKernels(Napi::Env env, Napi::Object exports);
// Adds the training attention forward and backward (train_attention.cc) to the addon's exports.
void AddTrainAttentionKernels(Napi::Env env, Napi::Object exports);
// Adds AdamW's one-pass update (optimizer_kernels.cc) to the addon's exports.
void AddOptimizerKernels(Napi::Env env, Napi::Object exports);

// exp(x) in float32 within ~2 ulp, written so the compiler vectorises it (no calls, no branches): x = n·ln2 + r
// with n rounded to nearest by the 1.5·2^23 trick, e^r by a degree-6 polynomial, 2^n put in the exponent bits.
// Results below float32's normal range flush to 0 (a masked attention score), above it go to +Infinity; NaN passes.
inline float FastExp(float x) {
  const float hi = 88.3762626647949f, lo = -87.3365447504f;
  const float xc = x > hi ? hi : (x < lo ? lo : x);
  const float shifter = 12582912.0f;  // 1.5 * 2^23
  const float t = xc * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  int32_t ni;
  std::memcpy(&ni, &t, 4);
  ni -= 0x4B400000;  // the bits of the shifter: what is left is n as an integer
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  float y = p * scale;
  y = x < lo ? 0.0f : y;
  y = x > 88.72283935546875f ? INFINITY : y;
  return x != x ? x : y;
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, float32's rounding near 1; tfjs's erf kernel uses the
// same formula): branch-free around FastExp, so loops over it vectorise where std::erf's do not.
inline float FastErf(float x) {
  const float a = x < 0.0f ? -x : x;
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  const float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const float y = 1.0f - poly * FastExp(-a * a);
  return x < 0.0f ? -y : y;
}

// Σ x in double over eight running sums (vectorised; a single running sum is one add per element, in sequence).
inline double SumToDouble(const float* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) acc[k] += x[i + k];
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) s += x[i];
  return s;
}

// Σ x·y in double over eight running sums, as SumToDouble.
inline double DotToDouble(const float* x, const float* y, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) acc[k] += static_cast<double>(x[i + k]) * y[i + k];
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) s += static_cast<double>(x[i]) * y[i];
  return s;
}

// The largest element (NaN elements skipped: callers see them through the exponentials they feed), 16 at a time in
// two vectors of 8 (GCC vector extensions; the compiler leaves the scalar form of this loop unvectorised). The max
// is exact, so the grouping changes nothing but possibly the sign of a zero maximum, which no caller can see.
inline float MaxOf(const float* x, int64_t n) {
  typedef float Vec __attribute__((vector_size(32)));
  typedef float VecU __attribute__((vector_size(32), aligned(4)));
  Vec a0 = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY}, a1 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const Vec x0 = *reinterpret_cast<const VecU*>(x + i), x1 = *reinterpret_cast<const VecU*>(x + i + 8);
    a0 = x0 > a0 ? x0 : a0;
    a1 = x1 > a1 ? x1 : a1;
  }
  float m = -INFINITY;
  for (int k = 0; k < 8; k++) {
    m = a0[k] > m ? a0[k] : m;
    m = a1[k] > m ? a1[k] : m;
  }
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

}  // namespace rlhf_engine
