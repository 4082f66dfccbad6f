{
  # Multi-threaded CPU kernels of the `native` tensor backend (src/engine/native_backend.ts). Needs only a C++17
  # compiler; the backend's matrix products come from the OpenBLAS addon (native/blas). Build: `npm run build:engine`.
  # -fno-trapping-math lets the compiler vectorise loops with selects (exp, max, NaN checks); NaN still propagates.
  # -ffp-contract=off: no fused multiply-adds the source does not write (dropout masks must match tfjs's doubles).
  # simd_flags.cjs adds -mavx2 -mfma where the building (= running) CPU has them.
  "targets": [
    {
      "target_name": "rlhf_engine",
      "sources": ["engine_binding.cc", "decode_attention.cc", "decode_layer.cc", "fused_kernels.cc", "train_attention.cc", "optimizer_kernels.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-fexceptions", "-O3", "-fno-trapping-math", "-ffp-contract=off", "-std=c++17", "-pthread", "<!@(node simd_flags.cjs)"],
      "ldflags": ["-pthread"],
      "conditions": [
        ["OS=='mac'", {
          "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3", "-fno-trapping-math"] }
        }]
      ]
    }
  ]
}
