// The engine's thread pool, for kernels in other files of the addon (defined in engine_binding.cc).
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>

namespace rlhf {

// Runs fn(begin, end) over [0, n) in chunks of at least `grain` items, on the engine's threads.
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Adds decodeAttention to the addon's exports (decode_attention.cc).
void RegisterDecode(Napi::Env env, Napi::Object exports);

}  // namespace rlhf
