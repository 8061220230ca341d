# ATen's at::parallel_for is a header template: it splits work over threads only where the code
# that calls it is compiled with OpenMP (ATen/ParallelOpenMP.h tests _OPENMP); without -fopenmp
# every ctfgen kernel that calls it (decode-step kernels, k-means, average linkage) runs on one
# thread whatever --threads says. So ctfgen compiles with OpenMP and links the OpenMP runtime
# libtorch uses, so both share one thread pool and torch::set_num_threads governs both:
#  - Debian's libtorch links the system libgomp, which -fopenmp links too;
#  - a PyTorch wheel carries its own copy (torch/lib/libgomp-<hash>.so.1); ctfgen links that one
#    instead, as a second libgomp in the process would keep a second pool with its own count.
# Defines the interface target ctfgen_openmp.
find_package(OpenMP REQUIRED COMPONENTS CXX)
add_library(ctfgen_openmp INTERFACE)
target_compile_options(ctfgen_openmp INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${OpenMP_CXX_FLAGS}>)
set(_ctfgen_bundled_gomp "")
if(CTFGEN_TORCH_ROOT)
  file(GLOB _ctfgen_bundled_gomp "${CTFGEN_TORCH_ROOT}/lib/libgomp*.so*")
endif()
if(_ctfgen_bundled_gomp)
  list(GET _ctfgen_bundled_gomp 0 _ctfgen_bundled_gomp)
  target_link_libraries(ctfgen_openmp INTERFACE "${_ctfgen_bundled_gomp}")
  message(STATUS "OpenMP: compiling with ${OpenMP_CXX_FLAGS}, runtime ${_ctfgen_bundled_gomp} (libtorch's own)")
else()
  target_link_libraries(ctfgen_openmp INTERFACE OpenMP::OpenMP_CXX)
  message(STATUS "OpenMP: compiling with ${OpenMP_CXX_FLAGS}, runtime ${OpenMP_CXX_LIBRARIES}")
endif()
