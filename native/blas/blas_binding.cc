// OpenBLAS single-precision matrix products for Node (node-addon-api), used by the wasm backend's BatchMatMul and
// _FusedMatMul kernels. Operands are Float32Array views, usually all onto the wasm heap, so the products read and
// write tensors in place: nothing is copied. Every offset, leading dimension and batch stride is checked against its
// array's length before any call, so a wrong index throws a JS error instead of writing outside the heap.
//
//   gemm(transA, transB, M, N, K, A, aOffset, lda, B, bOffset, ldb, C, cOffset, ldc, batch, strideA, strideB, strideC
//        [, beta])
//     C[i] = op(A[i]) · op(B[i]) + beta · C[i] for i < batch, row-major; strides in elements, 0 = the same operand
//     for every i. beta defaults to 0 (C is only written); beta = 1 adds the product to what C holds (a bias).
//   packedGemm(format, transW, N, R, C, X, words, scales, channelAxis, Y)
//     Y = X · W (transW false: X [N, R], Y [N, C]) or X · Wᵀ (transW true: X [N, C], Y [N, R]) for a frozen weight
//     W [R, C] stored packed (src/models/ops/packed_weight.ts): format 0 bf16, 1 int8 with per-channel scales
//     (channelAxis 0: one per row, 1: one per column), 2 NF4 with one absmax per 64 values. W is expanded a tile of
//     rows at a time into a small float32 scratch buffer and multiplied by sgemm; no float32 copy of W is made.
//   setThreads(n), getThreads(), config()
#include <cblas.h>
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

double Number(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("blas.gemm: ") + name + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0) {
    throw Napi::RangeError::New(info.Env(), std::string("blas.gemm: ") + name + " must be a non-negative integer");
  }
  return v;
}

Napi::Float32Array Floats(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string("blas.gemm: ") + name + " must be a Float32Array");
  }
  return info[i].As<Napi::Float32Array>();
}

// Checks that `batch` matrices of rows × cols, `ld` apart by row and `stride` apart by batch entry, starting at
// `offset`, lie inside an array of `length` elements. Doubles are exact here (all values < 2^53 and checked).
void CheckExtent(Napi::Env env, const char* name, double length, double offset, double rows, double cols, double ld,
                 double batch, double stride) {
  if (ld < cols || ld < 1) throw Napi::RangeError::New(env, std::string("blas.gemm: leading dimension of ") + name + " is smaller than its row length");
  if (rows == 0 || cols == 0 || batch == 0) return;
  const double last = offset + (batch - 1) * stride + (rows - 1) * ld + cols;
  if (last > length) {
    throw Napi::RangeError::New(env, std::string("blas.gemm: ") + name + " needs " + std::to_string(static_cast<int64_t>(last)) +
                                         " elements but its array has " + std::to_string(static_cast<int64_t>(length)));
  }
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 18 && info.Length() != 19) throw Napi::TypeError::New(env, "blas.gemm takes 18 or 19 arguments");
  const bool transA = info[0].ToBoolean(), transB = info[1].ToBoolean();
  const double M = Number(info, 2, "M"), N = Number(info, 3, "N"), K = Number(info, 4, "K");
  Napi::Float32Array A = Floats(info, 5, "A"), B = Floats(info, 8, "B"), C = Floats(info, 11, "C");
  const double aOff = Number(info, 6, "aOffset"), lda = Number(info, 7, "lda");
  const double bOff = Number(info, 9, "bOffset"), ldb = Number(info, 10, "ldb");
  const double cOff = Number(info, 12, "cOffset"), ldc = Number(info, 13, "ldc");
  const double batch = Number(info, 14, "batch");
  const double sA = Number(info, 15, "strideA"), sB = Number(info, 16, "strideB"), sC = Number(info, 17, "strideC");
  float beta = 0.f;
  if (info.Length() == 19) {
    if (!info[18].IsNumber()) throw Napi::TypeError::New(env, "blas.gemm: beta must be a number");
    beta = info[18].As<Napi::Number>().FloatValue();
  }
  // cblas takes int dimensions.
  const double kIntMax = 2147483647.0;
  if (M > kIntMax || N > kIntMax || K > kIntMax || lda > kIntMax || ldb > kIntMax || ldc > kIntMax) {
    throw Napi::RangeError::New(env, "blas.gemm: a dimension exceeds the int range of cblas");
  }
  // Stored shapes: op(A) is M × K, so A is M × K (K × M when transposed); op(B) is K × N.
  CheckExtent(env, "A", A.ElementLength(), aOff, transA ? K : M, transA ? M : K, lda, batch, sA);
  CheckExtent(env, "B", B.ElementLength(), bOff, transB ? N : K, transB ? K : N, ldb, batch, sB);
  CheckExtent(env, "C", C.ElementLength(), cOff, M, N, ldc, batch, sC);
  if (M == 0 || N == 0 || batch == 0) return env.Undefined();

  float* a = A.Data() + static_cast<size_t>(aOff);
  float* b = B.Data() + static_cast<size_t>(bOff);
  float* c = C.Data() + static_cast<size_t>(cOff);
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  for (size_t i = 0; i < static_cast<size_t>(batch); i++) {
    float* ci = c + i * static_cast<size_t>(sC);
    if (k == 0) {
      // An empty sum is zero; with beta = 0 the output may be uninitialised (NaN · 0), so it is set, not scaled.
      for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) {
          float& v = ci[static_cast<size_t>(r) * static_cast<size_t>(ldc) + j];
          v = beta == 0.f ? 0.f : beta * v;
        }
      continue;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k, 1.f,
                a + i * static_cast<size_t>(sA), static_cast<int>(lda), b + i * static_cast<size_t>(sB),
                static_cast<int>(ldb), beta, ci, static_cast<int>(ldc));
  }
  return env.Undefined();
}

// QLoRA's NF4 levels, as NF4_LEVELS in src/models/ops/packed_weight.ts.
const float kNf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
                        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
                        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                        0.7229568362236023f, 1.0f};

// Rows [r0, r1) of the packed W [R, C] as float32 into out (the decoding of expandRows in packed_weight.ts).
void ExpandRows(int format, const uint8_t* bytes, const float* scales, int axis, size_t r0, size_t r1, size_t C, float* out) {
  const size_t start = r0 * C, end = r1 * C;
  if (format == 0) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes);
    for (size_t i = start; i < end; i++) {
      const uint32_t bits = static_cast<uint32_t>(h[i]) << 16;
      std::memcpy(out + (i - start), &bits, 4);
    }
  } else if (format == 1) {
    const int8_t* q = reinterpret_cast<const int8_t*>(bytes);
    for (size_t r = r0; r < r1; r++) {
      float* o = out + (r - r0) * C;
      const int8_t* row = q + r * C;
      if (axis == 0) {
        const float s = scales[r];
        for (size_t c = 0; c < C; c++) o[c] = static_cast<float>(row[c]) * s;
      } else {
        for (size_t c = 0; c < C; c++) o[c] = static_cast<float>(row[c]) * scales[c];
      }
    }
  } else {
    for (size_t i = start; i < end; i++) {
      const int code = (bytes[i >> 1] >> ((i & 1) << 2)) & 15;
      out[i - start] = kNf4[code] * scales[i >> 6];
    }
  }
}

Napi::Value PackedGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 10) throw Napi::TypeError::New(env, "blas.packedGemm takes 10 arguments");
  const double format = Number(info, 0, "format");
  const bool transW = info[1].ToBoolean();
  const double N = Number(info, 2, "N"), R = Number(info, 3, "R"), C = Number(info, 4, "C");
  Napi::Float32Array X = Floats(info, 5, "X"), Y = Floats(info, 9, "Y");
  if (!info[6].IsTypedArray()) throw Napi::TypeError::New(env, "blas.packedGemm: words must be a typed array");
  Napi::TypedArray words = info[6].As<Napi::TypedArray>();
  const double axis = Number(info, 8, "channelAxis");
  if (format > 2 || axis > 1) throw Napi::RangeError::New(env, "blas.packedGemm: format must be 0, 1 or 2 and channelAxis 0 or 1");
  const double kIntMax = 2147483647.0;
  if (N > kIntMax || R > kIntMax || C > kIntMax) throw Napi::RangeError::New(env, "blas.packedGemm: a dimension exceeds the int range of cblas");
  const double n = R * C;
  const double needBytes = format == 0 ? 2 * n : format == 1 ? n : std::ceil(n / 2);
  if (static_cast<double>(words.ByteLength()) < needBytes) throw Napi::RangeError::New(env, "blas.packedGemm: words hold fewer values than R·C");
  const float* scales = nullptr;
  if (format != 0) {
    Napi::Float32Array S = Floats(info, 7, "scales");
    const double needScales = format == 1 ? (axis == 0 ? R : C) : std::ceil(n / 64);
    if (S.ElementLength() < needScales) throw Napi::RangeError::New(env, "blas.packedGemm: too few scales");
    scales = S.Data();
  }
  if (X.ElementLength() < N * (transW ? C : R)) throw Napi::RangeError::New(env, "blas.packedGemm: X is smaller than N × K");
  if (Y.ElementLength() < N * (transW ? R : C)) throw Napi::RangeError::New(env, "blas.packedGemm: Y is smaller than N × out");
  const int fmt = static_cast<int>(format), ax = static_cast<int>(axis);
  const int m = static_cast<int>(N), rows = static_cast<int>(R), cols = static_cast<int>(C);
  if (m == 0 || rows == 0 || cols == 0) {
    std::fill(Y.Data(), Y.Data() + static_cast<size_t>(N * (transW ? R : C)), 0.f);
    return env.Undefined();
  }
  // The data pointer straight from the typed array (already at its byte offset): its buffer may be a
  // SharedArrayBuffer (a threaded wasm heap), which Napi::ArrayBuffer cannot wrap.
  void* raw = nullptr;
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  napi_value buffer;
  if (napi_get_typedarray_info(env, words, &type, &length, &raw, &buffer, &offset) != napi_ok || raw == nullptr) {
    throw Napi::TypeError::New(env, "blas.packedGemm: cannot read the words array");
  }
  const uint8_t* bytes = static_cast<const uint8_t*>(raw);
  // About 256 KiB of scratch per tile: it stays in cache between its expansion and its product.
  const int tileRows = std::max(1, std::min(rows, 65536 / cols));
  std::vector<float> tile(static_cast<size_t>(tileRows) * cols);
  const float* x = X.Data();
  float* y = Y.Data();
  for (int r0 = 0; r0 < rows; r0 += tileRows) {
    const int tr = std::min(tileRows, rows - r0);
    ExpandRows(fmt, bytes, scales, ax, r0, r0 + tr, cols, tile.data());
    if (!transW) {
      // Y[N, C] (+)= X[:, r0:r0+tr] · W[r0:r0+tr, :]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, cols, tr, 1.f, x + r0, rows, tile.data(), cols,
                  r0 == 0 ? 0.f : 1.f, y, cols);
    } else {
      // Y[:, r0:r0+tr] = X[N, C] · W[r0:r0+tr, :]ᵀ
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, tr, cols, 1.f, x, cols, tile.data(), cols, 0.f, y + r0, rows);
    }
  }
  return env.Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 1) {
    throw Napi::RangeError::New(info.Env(), "blas.setThreads: n must be a positive integer");
  }
  openblas_set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), openblas_get_num_threads());
}

Napi::Value Config(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), std::string(openblas_get_config()) + " core=" + openblas_get_corename());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("packedGemm", Napi::Function::New(env, PackedGemm));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("config", Napi::Function::New(env, Config));
  return exports;
}

}  // namespace

NODE_API_MODULE(rlhf_blas, Init)
