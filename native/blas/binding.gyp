{
  # OpenBLAS sgemm for the wasm backend's matrix products. Needs the OpenBLAS headers and library
  # (Debian/Ubuntu: apt-get install libopenblas-dev). Build: `npm run build:blas`.
  "targets": [
    {
      "target_name": "rlhf_blas",
      "sources": ["blas_binding.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        # Where distributions other than Debian put cblas.h.
        "/usr/include/openblas"
      ],
      "libraries": ["-lopenblas"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-fexceptions", "-O2", "-std=c++17"],
      "conditions": [
        # Homebrew (brew install openblas) is keg-only: its headers and library are not on the default paths.
        ["OS=='mac'", {
          "include_dirs": ["/opt/homebrew/opt/openblas/include", "/usr/local/opt/openblas/include"],
          "libraries": ["-L/opt/homebrew/opt/openblas/lib", "-L/usr/local/opt/openblas/lib"],
          "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O2"] }
        }]
      ]
    }
  ]
}
