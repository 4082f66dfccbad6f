// Multi-threaded CPU kernels for the `native` tfjs backend (src/engine/native_backend.ts), as a node-addon-api addon.
// Tensors are JS TypedArrays whose memory lies outside the V8 heap and outside any wasm heap; each kernel reads its
// inputs and writes a preallocated output in place. Shapes arrive as JS arrays; every kernel checks that the arrays
// are as long as the shapes say before touching memory, so a wrong call throws instead of writing out of bounds.
//
//   binary(op, a, aShape, b, bShape, out, outShape)   elementwise with numpy broadcasting (float32 in)
//   unary(op, x, out, alpha?)                          elementwise float32 (alpha: Step's)
//   reduce(op, x, pre, red, post, out)                 over the middle axis of [pre, red, post]
//   argReduce(op, x, pre, red, post, out)              int32 index of the max (op 0) or min (op 1)
//   softmax(x, rows, cols, out, log)                   over the last axis
//   copy(src, srcOffset, srcStrides, dst, dstOffset, dstStrides, shape, elemBytes)
//                                                      strided copy (transpose, slice, concat, pad, tile)
//   gather(x, outer, n, inner, indices, out, elemBytes)
//   segmentSum(data, rows, inner, ids, out)            out[ids[r], :] += data[r, :]
//   setThreads(n), getThreads()
#include <napi.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine_shared.h"

namespace {

// ---- a small thread pool: the calling thread works too; idle workers block on a condition variable ----

class Pool {
 public:
  ~Pool() { Resize(1); }

  int Size() const { return static_cast<int>(workers_.size()) + 1; }

  void Resize(int n) {
    if (n < 1) n = 1;
    {
      std::unique_lock<std::mutex> lock(mu_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    stop_ = false;
    for (int i = 1; i < n; i++) workers_.emplace_back([this] { Work(); });
  }

  // Runs fn(begin, end) over [0, n) in chunks of at least `grain` items, on all threads.
  void For(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    const int threads = Size();
    if (threads == 1 || n <= grain) {
      fn(0, n);
      return;
    }
    int64_t chunks = std::min<int64_t>(threads * 4, (n + grain - 1) / grain);
    if (chunks < 2) {
      fn(0, n);
      return;
    }
    std::unique_lock<std::mutex> run(running_);  // one parallel region at a time
    {
      std::unique_lock<std::mutex> lock(mu_);
      job_ = &fn;
      total_ = n;
      chunks_ = chunks;
      next_.store(0);
      done_.store(0);
      ++generation_;
    }
    wake_.notify_all();
    Drain();
    // Every chunk done, and every worker that joined this job out of Drain: a worker still inside it could otherwise
    // claim a chunk of the next job while that job's counters are being reset, and the lost count would hang it.
    std::unique_lock<std::mutex> lock(mu_);
    finished_.wait(lock, [&] { return done_.load() == chunks_ && active_ == 0; });
    job_ = nullptr;
  }

 private:
  void Drain() {
    for (;;) {
      const int64_t c = next_.fetch_add(1);
      if (c >= chunks_) return;
      const int64_t begin = total_ * c / chunks_, end = total_ * (c + 1) / chunks_;
      (*job_)(begin, end);
      if (done_.fetch_add(1) + 1 == chunks_) {
        std::unique_lock<std::mutex> lock(mu_);
        finished_.notify_all();
      }
    }
  }

  void Work() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (job_ == nullptr) continue;
        ++active_;  // joined under the lock that set the job up, so it is this job's
      }
      Drain();
      std::unique_lock<std::mutex> lock(mu_);
      if (--active_ == 0) finished_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, running_;
  std::condition_variable wake_, finished_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t total_ = 0, chunks_ = 0;
  std::atomic<int64_t> next_{0}, done_{0};
  uint64_t generation_ = 0;
  int active_ = 0;  // workers inside Drain for the current job (guarded by mu_)
  bool stop_ = false;
};

Pool& pool() {
  static Pool p;
  return p;
}

// Elementwise work below this many elements per chunk stays on one thread: waking others costs more.
constexpr int64_t kGrain = 1 << 15;

// ---- argument helpers ----

struct View {
  uint8_t* data;
  size_t bytes;
  size_t elemBytes;
};

View Typed(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (!info[i].IsTypedArray()) {
    throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be a TypedArray");
  }
  auto t = info[i].As<Napi::TypedArray>();
  auto buf = t.ArrayBuffer();
  return View{static_cast<uint8_t*>(buf.Data()) + t.ByteOffset(), t.ByteLength(), t.ElementSize()};
}

int64_t Int(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0) {
    throw Napi::RangeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be a non-negative integer");
  }
  return static_cast<int64_t>(v);
}

std::vector<int64_t> Ints(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (!info[i].IsArray()) throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must be an array");
  auto a = info[i].As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("engine.") + fn + ": " + name + " must hold numbers");
    out[k] = static_cast<int64_t>(v.As<Napi::Number>().DoubleValue());
  }
  return out;
}

void Need(Napi::Env env, const char* fn, const char* name, const View& v, int64_t elems, size_t elemBytes) {
  if (v.elemBytes != elemBytes) {
    throw Napi::TypeError::New(env, std::string("engine.") + fn + ": " + name + " has " + std::to_string(v.elemBytes) +
                                        "-byte elements, expected " + std::to_string(elemBytes));
  }
  if (static_cast<double>(elems) * elemBytes > static_cast<double>(v.bytes)) {
    throw Napi::RangeError::New(env, std::string("engine.") + fn + ": " + name + " needs " + std::to_string(elems) +
                                         " elements but holds " + std::to_string(v.bytes / elemBytes));
  }
}

int64_t Product(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// ---- binary elementwise with broadcasting ----

enum BinaryOp { kAdd, kSub, kMul, kDiv, kMax, kMin, kPow, kSqDiff, kEq, kNe, kLt, kLe, kGt, kGe, kBinaryOps };

// Loops with the operand steps (0: broadcast, 1: contiguous) as template constants, so the compiler vectorises.
template <class Out, class F, int SA, int SB>
void Run(const float* a, const float* b, Out* o, int64_t n, F f) {
  for (int64_t i = 0; i < n; i++) o[i] = f(a[SA * i], b[SB * i]);
}

template <class Out, class F>
void RunSteps(const float* a, int64_t sa, const float* b, int64_t sb, Out* o, int64_t n, F f) {
  if (sa == 1 && sb == 1) Run<Out, F, 1, 1>(a, b, o, n, f);
  else if (sa == 1) Run<Out, F, 1, 0>(a, b, o, n, f);
  else if (sb == 1) Run<Out, F, 0, 1>(a, b, o, n, f);
  else Run<Out, F, 0, 0>(a, b, o, n, f);
}

// The output iterated as rows of its last (collapsed) axis; each operand's offset per row from its strides.
struct Broadcast {
  std::vector<int64_t> shape, sa, sb;  // collapsed output dims and operand strides (0 where broadcast)
};

Broadcast Collapse(const std::vector<int64_t>& out, const std::vector<int64_t>& as, const std::vector<int64_t>& bs) {
  const size_t r = out.size();
  std::vector<int64_t> sa(r, 0), sb(r, 0);
  auto strides = [&](const std::vector<int64_t>& s, std::vector<int64_t>& st) {
    int64_t acc = 1;
    for (size_t k = 0; k < s.size(); k++) {
      const size_t j = s.size() - 1 - k, oj = r - 1 - k;
      st[oj] = s[j] == 1 ? 0 : acc;
      acc *= s[j];
    }
  };
  strides(as, sa);
  strides(bs, sb);
  Broadcast c;
  for (size_t j = 0; j < r; j++) {
    if (out[j] == 1) continue;
    if (!c.shape.empty()) {
      const size_t k = c.shape.size() - 1;
      // Axis j joins the previous one when both operands step through them as one run (or both broadcast).
      const bool joinA = (c.sa[k] == 0 && sa[j] == 0) || (c.sa[k] == sa[j] * out[j] && sa[j] != 0);
      const bool joinB = (c.sb[k] == 0 && sb[j] == 0) || (c.sb[k] == sb[j] * out[j] && sb[j] != 0);
      if (joinA && joinB) {
        c.shape[k] *= out[j];
        c.sa[k] = sa[j];
        c.sb[k] = sb[j];
        continue;
      }
    }
    c.shape.push_back(out[j]);
    c.sa.push_back(sa[j]);
    c.sb.push_back(sb[j]);
  }
  if (c.shape.empty()) {
    c.shape.push_back(1);
    c.sa.push_back(0);
    c.sb.push_back(0);
  }
  return c;
}

template <class Out, class F>
void BroadcastLoop(const float* a, const float* b, Out* o, const Broadcast& c, F f) {
  const size_t r = c.shape.size();
  const int64_t inner = c.shape[r - 1];
  const int64_t rows = Product(c.shape) / inner;
  if (rows == 1) {
    // One run: split it into chunks.
    pool().For(inner, kGrain, [&](int64_t s, int64_t e) {
      RunSteps(a + c.sa[0] * s, c.sa[0], b + c.sb[0] * s, c.sb[0], o + s, e - s, f);
    });
    return;
  }
  const int64_t rowGrain = std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1));
  pool().For(rows, rowGrain, [&](int64_t s, int64_t e) {
    for (int64_t row = s; row < e; row++) {
      int64_t rest = row, oa = 0, ob = 0;
      for (size_t k = r - 1; k-- > 0;) {
        const int64_t idx = rest % c.shape[k];
        rest /= c.shape[k];
        oa += idx * c.sa[k];
        ob += idx * c.sb[k];
      }
      RunSteps(a + oa, c.sa[r - 1], b + ob, c.sb[r - 1], o + row * inner, inner, f);
    }
  });
}

inline float NanMax(float x, float y) { return (x != x || y != y) ? std::numeric_limits<float>::quiet_NaN() : (x > y ? x : y); }
inline float NanMin(float x, float y) { return (x != x || y != y) ? std::numeric_limits<float>::quiet_NaN() : (x < y ? x : y); }

Napi::Value Binary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 7) throw Napi::TypeError::New(env, "engine.binary takes 7 arguments");
  const int64_t op = Int(info, 0, "binary", "op");
  const View A = Typed(info, 1, "binary", "a"), B = Typed(info, 3, "binary", "b"), O = Typed(info, 5, "binary", "out");
  const auto as = Ints(info, 2, "binary", "aShape"), bs = Ints(info, 4, "binary", "bShape"), os = Ints(info, 6, "binary", "outShape");
  if (op < 0 || op >= kBinaryOps) throw Napi::RangeError::New(env, "engine.binary: unknown op");
  if (as.size() > os.size() || bs.size() > os.size()) throw Napi::RangeError::New(env, "engine.binary: operand rank exceeds the output's");
  for (size_t k = 0; k < as.size(); k++) {
    const int64_t d = as[as.size() - 1 - k], od = os[os.size() - 1 - k];
    if (d != 1 && d != od) throw Napi::RangeError::New(env, "engine.binary: a does not broadcast to the output");
  }
  for (size_t k = 0; k < bs.size(); k++) {
    const int64_t d = bs[bs.size() - 1 - k], od = os[os.size() - 1 - k];
    if (d != 1 && d != od) throw Napi::RangeError::New(env, "engine.binary: b does not broadcast to the output");
  }
  const int64_t n = Product(os);
  const bool compare = op >= kEq;
  Need(env, "binary", "a", A, Product(as), 4);
  Need(env, "binary", "b", B, Product(bs), 4);
  Need(env, "binary", "out", O, n, compare ? 1 : 4);
  if (n == 0) return env.Undefined();
  const Broadcast c = Collapse(os, as, bs);
  const float* a = reinterpret_cast<const float*>(A.data);
  const float* b = reinterpret_cast<const float*>(B.data);
  float* o = reinterpret_cast<float*>(O.data);
  uint8_t* ob = O.data;
  switch (op) {
    case kAdd: BroadcastLoop(a, b, o, c, [](float x, float y) { return x + y; }); break;
    case kSub: BroadcastLoop(a, b, o, c, [](float x, float y) { return x - y; }); break;
    case kMul: BroadcastLoop(a, b, o, c, [](float x, float y) { return x * y; }); break;
    case kDiv: BroadcastLoop(a, b, o, c, [](float x, float y) { return x / y; }); break;
    case kMax: BroadcastLoop(a, b, o, c, NanMax); break;
    case kMin: BroadcastLoop(a, b, o, c, NanMin); break;
    case kPow: BroadcastLoop(a, b, o, c, [](float x, float y) { return static_cast<float>(std::pow(static_cast<double>(x), static_cast<double>(y))); }); break;
    case kSqDiff: BroadcastLoop(a, b, o, c, [](float x, float y) { return (x - y) * (x - y); }); break;
    case kEq: BroadcastLoop(a, b, ob, c, [](float x, float y) -> uint8_t { return x == y; }); break;
    case kNe: BroadcastLoop(a, b, ob, c, [](float x, float y) -> uint8_t { return x != y; }); break;
    case kLt: BroadcastLoop(a, b, ob, c, [](float x, float y) -> uint8_t { return x < y; }); break;
    case kLe: BroadcastLoop(a, b, ob, c, [](float x, float y) -> uint8_t { return x <= y; }); break;
    case kGt: BroadcastLoop(a, b, ob, c, [](float x, float y) -> uint8_t { return x > y; }); break;
    case kGe: BroadcastLoop(a, b, ob, c, [](float x, float y) -> uint8_t { return x >= y; }); break;
  }
  return env.Undefined();
}

// ---- unary elementwise ----

enum UnaryOp {
  kExp, kLog, kSqrt, kRsqrt, kTanh, kSigmoid, kErf, kNeg, kAbs, kRelu, kSquare, kReciprocal, kSin, kCos, kLog1p,
  kSoftplus, kFloor, kCeil, kSign, kExpm1, kElu, kRelu6, kStep, kUnaryOps
};

template <class F>
void Map(const float* x, float* o, int64_t n, F f) {
  pool().For(n, kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) o[i] = f(x[i]);
  });
}

// tfjs's softplus: exp(x) far below zero, x far above, log(1 + exp(x)) between (thresholds from float32's epsilon).
inline float Softplus(float x) {
  const float threshold = std::log(1.1920928955078125e-7f) + 2.0f;
  if (x > -threshold) return x;
  if (x < threshold) return std::exp(x);
  return std::log1p(std::exp(x));
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 && info.Length() != 4) throw Napi::TypeError::New(env, "engine.unary takes 3 or 4 arguments");
  // The op's parameter (Step's alpha), 0 when not given.
  const float alpha = info.Length() == 4 && info[3].IsNumber() ? info[3].As<Napi::Number>().FloatValue() : 0.0f;
  const int64_t op = Int(info, 0, "unary", "op");
  const View X = Typed(info, 1, "unary", "x"), O = Typed(info, 2, "unary", "out");
  if (op < 0 || op >= kUnaryOps) throw Napi::RangeError::New(env, "engine.unary: unknown op");
  const int64_t n = static_cast<int64_t>(X.bytes / 4);
  Need(env, "unary", "x", X, n, 4);
  Need(env, "unary", "out", O, n, 4);
  const float* x = reinterpret_cast<const float*>(X.data);
  float* o = reinterpret_cast<float*>(O.data);
  switch (op) {
    case kExp: Map(x, o, n, [](float v) { return rlhf_engine::FastExp(v); }); break;
    case kLog: Map(x, o, n, [](float v) { return std::log(v); }); break;
    case kSqrt: Map(x, o, n, [](float v) { return std::sqrt(v); }); break;
    case kRsqrt: Map(x, o, n, [](float v) { return 1.0f / std::sqrt(v); }); break;
    case kTanh: Map(x, o, n, [](float v) { return std::tanh(v); }); break;
    case kSigmoid: Map(x, o, n, [](float v) { return 1.0f / (1.0f + rlhf_engine::FastExp(-v)); }); break;
    case kErf: Map(x, o, n, [](float v) { return std::erf(v); }); break;
    case kNeg: Map(x, o, n, [](float v) { return -v; }); break;
    case kAbs: Map(x, o, n, [](float v) { return std::fabs(v); }); break;
    case kRelu: Map(x, o, n, [](float v) { return v < 0 ? 0.0f : v; }); break;
    case kSquare: Map(x, o, n, [](float v) { return v * v; }); break;
    case kReciprocal: Map(x, o, n, [](float v) { return 1.0f / v; }); break;
    case kSin: Map(x, o, n, [](float v) { return std::sin(v); }); break;
    case kCos: Map(x, o, n, [](float v) { return std::cos(v); }); break;
    case kLog1p: Map(x, o, n, [](float v) { return std::log1p(v); }); break;
    case kSoftplus: Map(x, o, n, Softplus); break;
    case kFloor: Map(x, o, n, [](float v) { return std::floor(v); }); break;
    case kCeil: Map(x, o, n, [](float v) { return std::ceil(v); }); break;
    case kSign: Map(x, o, n, [](float v) { return v < 0 ? -1.0f : (v > 0 ? 1.0f : 0.0f); }); break;
    case kExpm1: Map(x, o, n, [](float v) { return std::expm1(v); }); break;
    case kElu: Map(x, o, n, [](float v) { return v >= 0 ? v : std::expm1(v); }); break;
    case kRelu6: Map(x, o, n, [](float v) { return v < 0 ? 0.0f : (v > 6 ? 6.0f : v); }); break;
    // tfjs's step: NaN stays NaN, 1 above zero, alpha elsewhere (ReLU's gradient is dy · step(x)).
    case kStep: Map(x, o, n, [alpha](float v) { return std::isnan(v) ? v : (v > 0 ? 1.0f : alpha); }); break;
  }
  return env.Undefined();
}

// ---- reductions over the middle axis of [pre, red, post] ----

enum ReduceOp { kSum, kMean, kRMax, kRMin, kProd, kReduceOps };

Napi::Value Reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 6) throw Napi::TypeError::New(env, "engine.reduce takes 6 arguments");
  const int64_t op = Int(info, 0, "reduce", "op");
  const View X = Typed(info, 1, "reduce", "x");
  const int64_t pre = Int(info, 2, "reduce", "pre"), red = Int(info, 3, "reduce", "red"), post = Int(info, 4, "reduce", "post");
  const View O = Typed(info, 5, "reduce", "out");
  if (op < 0 || op >= kReduceOps) throw Napi::RangeError::New(env, "engine.reduce: unknown op");
  Need(env, "reduce", "x", X, pre * red * post, 4);
  Need(env, "reduce", "out", O, pre * post, 4);
  const float* x = reinterpret_cast<const float*>(X.data);
  float* o = reinterpret_cast<float*>(O.data);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float nan_value = nan;
  auto rowsGrain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, red * post));
  pool().For(pre, rowsGrain, [&](int64_t s, int64_t e) {
    std::vector<double> acc(static_cast<size_t>(post));
    for (int64_t p = s; p < e; p++) {
      const float* base = x + p * red * post;
      float* out = o + p * post;
      if (post == 1 && (op == kRMax || op == kRMin)) {
        // One row: a plain scan (vectorised), NaN checked once at the end.
        float best = red > 0 ? base[0] : (op == kRMax ? -INFINITY : INFINITY);
        bool nan = false;
        if (op == kRMax) for (int64_t r = 0; r < red; r++) { best = base[r] > best ? base[r] : best; nan |= base[r] != base[r]; }
        else for (int64_t r = 0; r < red; r++) { best = base[r] < best ? base[r] : best; nan |= base[r] != base[r]; }
        out[0] = nan ? nan_value : best;
        continue;
      }
      if (post == 1 && op != kProd) {
        const double sum = rlhf_engine::SumToDouble(base, red);
        out[0] = static_cast<float>(op == kMean ? (red > 0 ? sum / static_cast<double>(red) : nan) : sum);
        continue;
      }
      if (op == kSum || op == kMean || op == kProd) {
        // Accumulated in double, as tfjs's cpu kernels accumulate in JS numbers.
        std::fill(acc.begin(), acc.end(), op == kProd ? 1.0 : 0.0);
        for (int64_t r = 0; r < red; r++) {
          const float* row = base + r * post;
          if (op == kProd) for (int64_t q = 0; q < post; q++) acc[q] *= row[q];
          else for (int64_t q = 0; q < post; q++) acc[q] += row[q];
        }
        const double scale = op == kMean ? (red > 0 ? 1.0 / static_cast<double>(red) : nan) : 1.0;
        for (int64_t q = 0; q < post; q++) out[q] = static_cast<float>(acc[q] * scale);
      } else {
        const bool isMax = op == kRMax;
        for (int64_t q = 0; q < post; q++) out[q] = red > 0 ? base[q] : (isMax ? -INFINITY : INFINITY);
        for (int64_t r = 1; r < red; r++) {
          const float* row = base + r * post;
          for (int64_t q = 0; q < post; q++) {
            const float v = row[q];
            if (v != v || (isMax ? v > out[q] : v < out[q])) out[q] = (out[q] != out[q]) ? out[q] : v;
          }
        }
      }
    }
  });
  return env.Undefined();
}

Napi::Value ArgReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 6) throw Napi::TypeError::New(env, "engine.argReduce takes 6 arguments");
  const int64_t op = Int(info, 0, "argReduce", "op");
  const View X = Typed(info, 1, "argReduce", "x");
  const int64_t pre = Int(info, 2, "argReduce", "pre"), red = Int(info, 3, "argReduce", "red"), post = Int(info, 4, "argReduce", "post");
  const View O = Typed(info, 5, "argReduce", "out");
  Need(env, "argReduce", "x", X, pre * red * post, 4);
  Need(env, "argReduce", "out", O, pre * post, 4);
  const float* x = reinterpret_cast<const float*>(X.data);
  int32_t* o = reinterpret_cast<int32_t*>(O.data);
  pool().For(pre * post, kGrain / std::max<int64_t>(1, red) + 1, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) {
      const int64_t p = i / post, q = i % post;
      const float* base = x + p * red * post + q;
      float best = red > 0 ? base[0] : 0.f;
      int32_t at = 0;
      for (int64_t r = 1; r < red; r++) {
        const float v = base[r * post];
        if (op == 0 ? v > best : v < best) {
          best = v;
          at = static_cast<int32_t>(r);
        }
      }
      o[i] = at;
    }
  });
  return env.Undefined();
}

// ---- softmax over the last axis ----

Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5) throw Napi::TypeError::New(env, "engine.softmax takes 5 arguments");
  const View X = Typed(info, 0, "softmax", "x");
  const int64_t rows = Int(info, 1, "softmax", "rows"), cols = Int(info, 2, "softmax", "cols");
  const View O = Typed(info, 3, "softmax", "out");
  const bool log = info[4].ToBoolean();
  Need(env, "softmax", "x", X, rows * cols, 4);
  Need(env, "softmax", "out", O, rows * cols, 4);
  const float* x = reinterpret_cast<const float*>(X.data);
  float* o = reinterpret_cast<float*>(O.data);
  pool().For(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols)), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; r++) {
      const float* in = x + r * cols;
      float* out = o + r * cols;
      float m = -INFINITY;
      bool nan = false;
      for (int64_t c = 0; c < cols; c++) {
        m = in[c] > m ? in[c] : m;
        nan |= in[c] != in[c];
      }
      if (nan) m = std::numeric_limits<float>::quiet_NaN();
      // Exponentials first (a vectorised loop), then their sum in double (as the cpu kernel sums in JS numbers).
      for (int64_t c = 0; c < cols; c++) out[c] = rlhf_engine::FastExp(in[c] - m);
      const double sum = rlhf_engine::SumToDouble(out, cols);
      if (log) {
        const float lse = m + static_cast<float>(std::log(sum));
        for (int64_t c = 0; c < cols; c++) out[c] = in[c] - lse;
      } else {
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t c = 0; c < cols; c++) out[c] *= inv;
      }
    }
  });
  return env.Undefined();
}

// ---- strided copy ----

// A transpose-like copy: the destination's innermost axis (`last`) walks the source with a large stride, and
// source axis `k` is the contiguous one. Copied in 32 × 32 tiles so both sides stay in cache (a plain row-by-row
// copy reads a new cache line per element).
template <class T>
void CopyTiled(const T* src, const std::vector<int64_t>& ss, T* dst, const std::vector<int64_t>& ds,
               const std::vector<int64_t>& shape, size_t k) {
  constexpr int64_t kTile = 32;
  const size_t r = shape.size(), last = r - 1;
  const int64_t nk = shape[k], nl = shape[last];
  const int64_t dk = ds[k], sl = ss[last];
  int64_t outer = 1;
  for (size_t j = 0; j < r; j++) if (j != k && j != last) outer *= shape[j];
  const int64_t kBlocks = (nk + kTile - 1) / kTile;
  pool().For(outer * kBlocks, std::max<int64_t>(1, kGrain / (kTile * std::max<int64_t>(1, nl))), [&](int64_t s, int64_t e) {
    for (int64_t w = s; w < e; w++) {
      int64_t rest = w / kBlocks, so = 0, dof = 0;
      const int64_t i0 = (w % kBlocks) * kTile, i1 = std::min(nk, i0 + kTile);
      for (size_t j = r; j-- > 0;) {
        if (j == k || j == last) continue;
        const int64_t idx = rest % shape[j];
        rest /= shape[j];
        so += idx * ss[j];
        dof += idx * ds[j];
      }
      for (int64_t j0 = 0; j0 < nl; j0 += kTile) {
        const int64_t j1 = std::min(nl, j0 + kTile);
        for (int64_t i = i0; i < i1; i++) {
          const T* a = src + so + i;  // source axis k has stride 1
          T* b = dst + dof + i * dk;
          for (int64_t j = j0; j < j1; j++) b[j] = a[j * sl];
        }
      }
    }
  });
}

template <class T>
void CopyRows(const T* src, const std::vector<int64_t>& ss, T* dst, const std::vector<int64_t>& ds,
              const std::vector<int64_t>& shape) {
  const size_t r = shape.size();
  if (r >= 2 && ds[r - 1] == 1 && ss[r - 1] != 1 && shape[r - 1] >= 8) {
    for (size_t k = 0; k + 1 < r; k++) {
      if (ss[k] == 1 && shape[k] >= 8) {
        CopyTiled(src, ss, dst, ds, shape, k);
        return;
      }
    }
  }
  const int64_t inner = shape[r - 1];
  const int64_t si = ss[r - 1], di = ds[r - 1];
  const int64_t rows = Product(shape) / inner;
  pool().For(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, inner)), [&](int64_t s, int64_t e) {
    for (int64_t row = s; row < e; row++) {
      int64_t rest = row, so = 0, dof = 0;
      for (size_t k = r - 1; k-- > 0;) {
        const int64_t idx = rest % shape[k];
        rest /= shape[k];
        so += idx * ss[k];
        dof += idx * ds[k];
      }
      const T* a = src + so;
      T* b = dst + dof;
      if (si == 1 && di == 1) std::memcpy(b, a, static_cast<size_t>(inner) * sizeof(T));
      else for (int64_t i = 0; i < inner; i++) b[i * di] = a[i * si];
    }
  });
}

// Drops size-1 axes and merges axes that are one run in both source and destination.
void CollapseCopy(std::vector<int64_t>& shape, std::vector<int64_t>& ss, std::vector<int64_t>& ds) {
  std::vector<int64_t> sh, s2, d2;
  for (size_t j = 0; j < shape.size(); j++) {
    if (shape[j] == 1) continue;
    if (!sh.empty()) {
      const size_t k = sh.size() - 1;
      if (s2[k] == ss[j] * shape[j] && d2[k] == ds[j] * shape[j]) {
        sh[k] *= shape[j];
        s2[k] = ss[j];
        d2[k] = ds[j];
        continue;
      }
    }
    sh.push_back(shape[j]);
    s2.push_back(ss[j]);
    d2.push_back(ds[j]);
  }
  if (sh.empty()) {
    sh.push_back(1);
    s2.push_back(1);
    d2.push_back(1);
  }
  shape.swap(sh);
  ss.swap(s2);
  ds.swap(d2);
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 8) throw Napi::TypeError::New(env, "engine.copy takes 8 arguments");
  const View S = Typed(info, 0, "copy", "src"), D = Typed(info, 3, "copy", "dst");
  const int64_t so = Int(info, 1, "copy", "srcOffset"), dof = Int(info, 4, "copy", "dstOffset");
  auto ss = Ints(info, 2, "copy", "srcStrides"), ds = Ints(info, 5, "copy", "dstStrides"), shape = Ints(info, 6, "copy", "shape");
  const int64_t eb = Int(info, 7, "copy", "elemBytes");
  if (ss.size() != shape.size() || ds.size() != shape.size()) throw Napi::RangeError::New(env, "engine.copy: strides and shape differ in rank");
  if (eb != 1 && eb != 4) throw Napi::RangeError::New(env, "engine.copy: elemBytes must be 1 or 4");
  if (shape.empty()) {
    shape.push_back(1);
    ss.push_back(1);
    ds.push_back(1);
  }
  if (Product(shape) == 0) return env.Undefined();
  // Last element each side reaches (strides are non-negative here), checked against the arrays.
  int64_t sLast = so, dLast = dof;
  for (size_t k = 0; k < shape.size(); k++) {
    if (ss[k] < 0 || ds[k] < 0) throw Napi::RangeError::New(env, "engine.copy: negative stride");
    sLast += (shape[k] - 1) * ss[k];
    dLast += (shape[k] - 1) * ds[k];
  }
  Need(env, "copy", "src", S, sLast + 1, static_cast<size_t>(eb));
  Need(env, "copy", "dst", D, dLast + 1, static_cast<size_t>(eb));
  CollapseCopy(shape, ss, ds);
  if (eb == 4) CopyRows(reinterpret_cast<const uint32_t*>(S.data) + so, ss, reinterpret_cast<uint32_t*>(D.data) + dof, ds, shape);
  else CopyRows(S.data + so, ss, D.data + dof, ds, shape);
  return env.Undefined();
}

// ---- gather rows along an axis ----

Napi::Value Gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 7) throw Napi::TypeError::New(env, "engine.gather takes 7 arguments");
  const View X = Typed(info, 0, "gather", "x");
  const int64_t outer = Int(info, 1, "gather", "outer"), n = Int(info, 2, "gather", "n"), inner = Int(info, 3, "gather", "inner");
  const View I = Typed(info, 4, "gather", "indices"), O = Typed(info, 5, "gather", "out");
  const int64_t eb = Int(info, 6, "gather", "elemBytes");
  if (eb != 1 && eb != 4) throw Napi::RangeError::New(env, "engine.gather: elemBytes must be 1 or 4");
  const int64_t count = static_cast<int64_t>(I.bytes / 4);
  Need(env, "gather", "indices", I, count, 4);
  Need(env, "gather", "x", X, outer * n * inner, static_cast<size_t>(eb));
  Need(env, "gather", "out", O, outer * count * inner, static_cast<size_t>(eb));
  const int32_t* idx = reinterpret_cast<const int32_t*>(I.data);
  for (int64_t i = 0; i < count; i++) {
    if (idx[i] < 0 || idx[i] >= n) {
      throw Napi::RangeError::New(env, "GatherV2: the index value " + std::to_string(idx[i]) + " is not in [0, " + std::to_string(n - 1) + "]");
    }
  }
  const size_t rowBytes = static_cast<size_t>(inner * eb);
  pool().For(outer * count, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, inner)), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; r++) {
      const int64_t o = r / count, i = r % count;
      std::memcpy(O.data + static_cast<size_t>(r) * rowBytes, X.data + static_cast<size_t>(o * n + idx[i]) * rowBytes, rowBytes);
    }
  });
  return env.Undefined();
}

// ---- segment sums (the gradient of gather): out[ids[r], :] += data[r, :]; out starts zeroed ----

Napi::Value SegmentSum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 5) throw Napi::TypeError::New(env, "engine.segmentSum takes 5 arguments");
  const View X = Typed(info, 0, "segmentSum", "data");
  const int64_t rows = Int(info, 1, "segmentSum", "rows"), inner = Int(info, 2, "segmentSum", "inner");
  const View I = Typed(info, 3, "segmentSum", "ids"), O = Typed(info, 4, "segmentSum", "out");
  Need(env, "segmentSum", "data", X, rows * inner, 4);
  Need(env, "segmentSum", "ids", I, rows, 4);
  const int64_t segments = inner > 0 ? static_cast<int64_t>(O.bytes / 4) / inner : 0;
  const float* x = reinterpret_cast<const float*>(X.data);
  const int32_t* ids = reinterpret_cast<const int32_t*>(I.data);
  float* o = reinterpret_cast<float*>(O.data);
  // Threads split the columns, so no two write the same element.
  pool().For(inner, 256, [&](int64_t s, int64_t e) {
    for (int64_t r = 0; r < rows; r++) {
      const int64_t id = ids[r];
      if (id < 0 || id >= segments) continue;  // tfjs drops out-of-range segment ids
      const float* src = x + r * inner;
      float* dst = o + id * inner;
      for (int64_t c = s; c < e; c++) dst[c] += src[c];
    }
  });
  return env.Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1) {
    throw Napi::RangeError::New(info.Env(), "engine.setThreads: n must be a positive integer");
  }
  pool().Resize(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pool().Size()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // Tensors are ArrayBuffers that V8 mallocs and frees at each GC. glibc would map each large one afresh (a page
  // fault per 4 KiB on first write, several times the cost of the kernel writing it) and unmap it on free; keeping
  // buffers up to 32 MiB in the heap, and freed memory mapped, lets later tensors reuse pages already faulted in.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("reduce", Napi::Function::New(env, Reduce));
  exports.Set("argReduce", Napi::Function::New(env, ArgReduce));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("copy", Napi::Function::New(env, Copy));
  exports.Set("gather", Napi::Function::New(env, Gather));
  exports.Set("segmentSum", Napi::Function::New(env, SegmentSum));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  rlhf_engine::AddDecodeKernels(env, exports);
  rlhf_engine::AddFusedKernels(env, exports);
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  return exports;
}

}  // namespace

namespace rlhf_engine {
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) { pool().For(n, grain, fn); }
int Threads() { return pool().Size(); }
}  // namespace rlhf_engine

NODE_API_MODULE(rlhf_engine, Init)
