// MPI collectives for Node (node-addon-api): allreduce, reduce_scatter, allgather, broadcast and barrier on
// Float32Array (allreduce and broadcast also on Float64Array, for metrics and step counts).
//
// Every collective is started non-blocking (MPI_I*) and completed by polling MPI_Test against a deadline, so a rank
// that died or hung turns into a JS exception naming the collective instead of a process that waits forever. MPI's
// errors are returned (MPI_ERRORS_RETURN) and thrown as JS errors too. After a failure the communicator is in an
// unknown state: every later call throws, and the caller is expected to exit (abort() takes the whole job down).
//
// Calls are synchronous on the JS thread: the trainers' step is synchronous, and the data stays in the JS typed
// arrays (their backing stores do not move), so nothing is copied besides the receive buffers allocated here.
#include <mpi.h>
#include <napi.h>
#include <dlfcn.h>
#include <time.h>

#include <chrono>
#include <climits>
#include <string>
#include <vector>

namespace {

bool g_failed = false;
std::string g_failure;

std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, len);
}

int WorldRank() {
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int WorldSize() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

[[noreturn]] void Fail(Napi::Env env, const std::string& message) {
  g_failed = true;
  g_failure = message;
  throw Napi::Error::New(env, message);
}

void CheckUsable(Napi::Env env, const char* what) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) {
    throw Napi::Error::New(env, std::string("mpi.") + what + ": MPI is " + (finalized ? "finalized" : "not initialized"));
  }
  if (g_failed) {
    throw Napi::Error::New(env, std::string("mpi.") + what + ": MPI is unusable after an earlier failure (" + g_failure + ")");
  }
}

void CheckRc(Napi::Env env, int rc, const char* what) {
  if (rc != MPI_SUCCESS) Fail(env, std::string("MPI ") + what + " failed on rank " + std::to_string(WorldRank()) + ": " + MpiErrorString(rc));
}

// Polls until the request completes or the deadline passes. MPI_Test also drives the progress of non-blocking
// collectives, so the poll starts tight and backs off to a short sleep (<= 200 us) while a peer is still computing.
void WaitWithDeadline(Napi::Env env, MPI_Request* request, double timeoutMs, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  long sleepNs = 0;
  for (int polls = 0;; polls++) {
    int done = 0;
    CheckRc(env, MPI_Test(request, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    const double waitedMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (timeoutMs > 0 && waitedMs > timeoutMs) {
      Fail(env, std::string("MPI ") + what + " timed out after " + std::to_string(static_cast<long>(waitedMs / 1000)) +
                    " s on rank " + std::to_string(WorldRank()) + " of " + std::to_string(WorldSize()) +
                    ": another rank has died, hung, or is not making the same call (raise RLHF_MPI_TIMEOUT, in seconds, "
                    "if a step or a checkpoint save legitimately takes longer)");
    }
    if (polls > 1000) {
      sleepNs = sleepNs == 0 ? 1000 : std::min(sleepNs * 2, 200000L);
      timespec ts{0, sleepNs};
      nanosleep(&ts, nullptr);
    }
  }
}

int CheckedCount(Napi::Env env, size_t n, const char* what) {
  if (n > static_cast<size_t>(INT_MAX)) throw Napi::RangeError::New(env, std::string("mpi.") + what + ": more than 2^31-1 elements");
  return static_cast<int>(n);
}

double TimeoutArg(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return 0;
  if (!info[index].IsNumber()) throw Napi::TypeError::New(info.Env(), "timeoutMs must be a number");
  return info[index].As<Napi::Number>().DoubleValue();
}

struct Buffer {
  void* data;
  int count;
  MPI_Datatype type;
};

Buffer FloatArrayArg(const Napi::CallbackInfo& info, size_t index, const char* what, bool allowDouble) {
  Napi::Env env = info.Env();
  if (info.Length() <= index || !info[index].IsTypedArray()) {
    throw Napi::TypeError::New(env, std::string("mpi.") + what + ": argument " + std::to_string(index) + " must be a Float32Array");
  }
  auto arr = info[index].As<Napi::TypedArray>();
  if (arr.TypedArrayType() == napi_float32_array) {
    auto f = arr.As<Napi::Float32Array>();
    return {f.Data(), CheckedCount(env, f.ElementLength(), what), MPI_FLOAT};
  }
  if (allowDouble && arr.TypedArrayType() == napi_float64_array) {
    auto d = arr.As<Napi::Float64Array>();
    return {d.Data(), CheckedCount(env, d.ElementLength(), what), MPI_DOUBLE};
  }
  throw Napi::TypeError::New(env, std::string("mpi.") + what + ": argument " + std::to_string(index) + " must be a " +
                                      (allowDouble ? "Float32Array or Float64Array" : "Float32Array"));
}

// counts[r] = elements owned by rank r; checked against the world size.
std::vector<int> CountsArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  Napi::Env env = info.Env();
  if (info.Length() <= index || !info[index].IsArray()) throw Napi::TypeError::New(env, std::string("mpi.") + what + ": counts must be an array");
  auto arr = info[index].As<Napi::Array>();
  const int size = WorldSize();
  if (arr.Length() != static_cast<uint32_t>(size)) {
    throw Napi::RangeError::New(env, std::string("mpi.") + what + ": counts has " + std::to_string(arr.Length()) + " entries for " +
                                         std::to_string(size) + " ranks");
  }
  std::vector<int> counts(size);
  for (int r = 0; r < size; r++) {
    double c = arr.Get(static_cast<uint32_t>(r)).As<Napi::Number>().DoubleValue();
    if (!(c >= 0) || c > INT_MAX || c != static_cast<double>(static_cast<int>(c))) {
      throw Napi::RangeError::New(env, std::string("mpi.") + what + ": counts[" + std::to_string(r) + "] is not a count");
    }
    counts[r] = static_cast<int>(c);
  }
  return counts;
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // Node loads addons with RTLD_LOCAL; Open MPI's plugins (mca_*.so) need libmpi's symbols global to load.
    for (const char* name : {"libmpi.so.40", "libmpi.so.12", "libmpi.so"}) {
      if (dlopen(name, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) || dlopen(name, RTLD_NOW | RTLD_GLOBAL)) break;
    }
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SINGLE, &provided);
    if (rc != MPI_SUCCESS) throw Napi::Error::New(env, "MPI_Init failed: " + MpiErrorString(rc));
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(version, &len);
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", WorldRank());
  out.Set("size", WorldSize());
  out.Set("library", std::string(version, len));
  return out;
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Finalize();
  return info.Env().Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  return info.Env().Undefined();
}

Napi::Value Failed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), g_failed);
}

MPI_Op OpArg(const Napi::CallbackInfo& info, size_t index) {
  std::string op = info.Length() > index && info[index].IsString() ? info[index].As<Napi::String>().Utf8Value() : "sum";
  if (op == "sum") return MPI_SUM;
  if (op == "max") return MPI_MAX;
  if (op == "min") return MPI_MIN;
  throw Napi::TypeError::New(info.Env(), "mpi.allreduce: op must be 'sum', 'max' or 'min', got '" + op + "'");
}

// allreduce(buffer, op = 'sum', timeoutMs): in place, the same result on every rank.
Napi::Value Allreduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env, "allreduce");
  Buffer buf = FloatArrayArg(info, 0, "allreduce", true);
  MPI_Op op = OpArg(info, 1);
  MPI_Request req;
  CheckRc(env, MPI_Iallreduce(MPI_IN_PLACE, buf.data, buf.count, buf.type, op, MPI_COMM_WORLD, &req), "allreduce");
  WaitWithDeadline(env, &req, TimeoutArg(info, 2), "allreduce");
  return env.Undefined();
}

// reduceScatter(send, counts, timeoutMs) -> Float32Array of counts[rank]: this rank's block of the sum over ranks.
Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env, "reduceScatter");
  Buffer send = FloatArrayArg(info, 0, "reduceScatter", false);
  std::vector<int> counts = CountsArg(info, 1, "reduceScatter");
  long total = 0;
  for (int c : counts) total += c;
  if (total != send.count) {
    throw Napi::RangeError::New(env, "mpi.reduceScatter: counts add up to " + std::to_string(total) + " but the buffer has " +
                                         std::to_string(send.count) + " elements");
  }
  auto out = Napi::Float32Array::New(env, counts[WorldRank()]);
  MPI_Request req;
  CheckRc(env, MPI_Ireduce_scatter(send.data, out.Data(), counts.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req), "reduce_scatter");
  WaitWithDeadline(env, &req, TimeoutArg(info, 2), "reduce_scatter");
  return out;
}

// allgather(send, counts, timeoutMs) -> Float32Array: every rank's block, in rank order (send has counts[rank]).
Napi::Value Allgather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env, "allgather");
  Buffer send = FloatArrayArg(info, 0, "allgather", false);
  std::vector<int> counts = CountsArg(info, 1, "allgather");
  const int rank = WorldRank();
  if (counts[rank] != send.count) {
    throw Napi::RangeError::New(env, "mpi.allgather: rank " + std::to_string(rank) + " sends " + std::to_string(send.count) +
                                         " elements but counts says " + std::to_string(counts[rank]));
  }
  std::vector<int> displs(counts.size());
  long total = 0;
  for (size_t r = 0; r < counts.size(); r++) {
    displs[r] = static_cast<int>(total);
    total += counts[r];
  }
  auto out = Napi::Float32Array::New(env, CheckedCount(env, static_cast<size_t>(total), "allgather"));
  MPI_Request req;
  CheckRc(env, MPI_Iallgatherv(send.data, send.count, MPI_FLOAT, out.Data(), counts.data(), displs.data(), MPI_FLOAT,
                               MPI_COMM_WORLD, &req), "allgather");
  WaitWithDeadline(env, &req, TimeoutArg(info, 2), "allgather");
  return out;
}

// broadcast(buffer, root, timeoutMs): in place; every rank ends with root's values.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env, "broadcast");
  Buffer buf = FloatArrayArg(info, 0, "broadcast", true);
  int root = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  if (root < 0 || root >= WorldSize()) throw Napi::RangeError::New(env, "mpi.broadcast: root " + std::to_string(root) + " is not a rank");
  MPI_Request req;
  CheckRc(env, MPI_Ibcast(buf.data, buf.count, buf.type, root, MPI_COMM_WORLD, &req), "broadcast");
  WaitWithDeadline(env, &req, TimeoutArg(info, 2), "broadcast");
  return env.Undefined();
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckUsable(env, "barrier");
  MPI_Request req;
  CheckRc(env, MPI_Ibarrier(MPI_COMM_WORLD, &req), "barrier");
  WaitWithDeadline(env, &req, TimeoutArg(info, 0), "barrier");
  return env.Undefined();
}

Napi::Object Register(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("finalize", Napi::Function::New(env, Finalize));
  exports.Set("abort", Napi::Function::New(env, Abort));
  exports.Set("failed", Napi::Function::New(env, Failed));
  exports.Set("allreduce", Napi::Function::New(env, Allreduce));
  exports.Set("reduceScatter", Napi::Function::New(env, ReduceScatter));
  exports.Set("allgather", Napi::Function::New(env, Allgather));
  exports.Set("broadcast", Napi::Function::New(env, Broadcast));
  exports.Set("barrier", Napi::Function::New(env, Barrier));
  return exports;
}

}  // namespace

NODE_API_MODULE(rlhf_mpi, Register)
