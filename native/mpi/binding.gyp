{
  # The MPI collectives addon. Include and link flags come from the system MPI's compiler wrapper, so the same file
  # builds against Open MPI (Debian: libopenmpi-dev) or MPICH. Build: `npx node-gyp rebuild --directory native/mpi`.
  "targets": [
    {
      "target_name": "rlhf_mpi",
      "sources": ["mpi_binding.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(mpicc --showme:incdirs 2>/dev/null || true)"
      ],
      "libraries": ["<!@(mpicc --showme:link 2>/dev/null || echo -lmpi)", "-ldl"],
      # Without these, mpi.h pulls in MPI's C++ bindings and loading fails on a missing MPI:: symbol.
      "defines": ["OMPI_SKIP_MPICXX", "MPICH_SKIP_MPICXX", "NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-fexceptions", "-O2", "-std=c++17"]
    }
  ]
}
