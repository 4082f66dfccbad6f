// OpenBLAS single-precision matrix products for Node (node-addon-api), used by the wasm backend's BatchMatMul and
// _FusedMatMul kernels. Operands are Float32Array views, usually all onto the wasm heap, so the products read and
// write tensors in place: nothing is copied. Every offset, leading dimension and batch stride is checked against its
// array's length before any call, so a wrong index throws a JS error instead of writing outside the heap.
//
//   gemm(transA, transB, M, N, K, A, aOffset, lda, B, bOffset, ldb, C, cOffset, ldc, batch, strideA, strideB, strideC
//        [, beta])
//     C[i] = op(A[i]) · op(B[i]) + beta · C[i] for i < batch, row-major; strides in elements, 0 = the same operand
//     for every i. beta defaults to 0 (C is only written); beta = 1 adds the product to what C holds (a bias).
//   setThreads(n), getThreads(), config()
#include <cblas.h>
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

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
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("config", Napi::Function::New(env, Config));
  return exports;
}

}  // namespace

NODE_API_MODULE(rlhf_blas, Init)
