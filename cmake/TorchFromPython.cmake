# Imports libtorch from a PyTorch install (a pip wheel, a distribution's python3-torch) through
# the interpreter given in CTFGEN_TORCH_PYTHON, without Torch's CMake config: for a CUDA build
# that config wants a CUDA toolkit matching the wheel, and ctfgen includes no CUDA header, so
# headers and shared libraries are all it needs. Defines the target ctfgen_torch and sets
# TORCH_LIBRARIES to it, like find_package(Torch) would.
#
# libtorch_cuda and libc10_cuda are linked with --no-as-needed: nothing in ctfgen calls them
# directly, but loading them is what registers the CUDA backend (without them
# torch::cuda::is_available() is false). The C++ ABI flag is the one the wheel was built with.
execute_process(
  COMMAND "${CTFGEN_TORCH_PYTHON}" -c
    "import os, torch; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__); print(torch.version.cuda or 'none'); import torch.distributed as d; print(int(d.is_available() and d.is_gloo_available()))"
  OUTPUT_VARIABLE _ctfgen_torch_out
  ERROR_VARIABLE _ctfgen_torch_err
  RESULT_VARIABLE _ctfgen_torch_rc
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _ctfgen_torch_rc EQUAL 0)
  message(FATAL_ERROR "CTFGEN_TORCH_PYTHON=${CTFGEN_TORCH_PYTHON} cannot import torch: ${_ctfgen_torch_err}")
endif()
string(REPLACE "\n" ";" _ctfgen_torch_lines "${_ctfgen_torch_out}")
list(GET _ctfgen_torch_lines 0 CTFGEN_TORCH_ROOT)
list(GET _ctfgen_torch_lines 1 _ctfgen_torch_abi)
list(GET _ctfgen_torch_lines 2 CTFGEN_TORCH_VERSION)
list(GET _ctfgen_torch_lines 3 CTFGEN_TORCH_CUDA)
list(GET _ctfgen_torch_lines 4 _ctfgen_torch_gloo)

# PyTorch 2.12 and later need C++20 (ATen refuses older standards).
if(CTFGEN_TORCH_VERSION VERSION_GREATER_EQUAL 2.12)
  set(CMAKE_CXX_STANDARD 20)
  message(STATUS "libtorch ${CTFGEN_TORCH_VERSION} needs C++20: building ctfgen as C++20")
endif()

set(_lib "${CTFGEN_TORCH_ROOT}/lib")
foreach(name torch torch_cpu c10)
  find_library(CTFGEN_TORCH_LIB_${name} NAMES ${name} PATHS "${_lib}" NO_DEFAULT_PATH)
  if(NOT CTFGEN_TORCH_LIB_${name})
    message(FATAL_ERROR "lib${name}.so not found in ${_lib} (from ${CTFGEN_TORCH_PYTHON})")
  endif()
endforeach()
set(_cuda_libs "")
foreach(name torch_cuda c10_cuda)
  find_library(CTFGEN_TORCH_LIB_${name} NAMES ${name} PATHS "${_lib}" NO_DEFAULT_PATH)
  if(CTFGEN_TORCH_LIB_${name})
    list(APPEND _cuda_libs "${CTFGEN_TORCH_LIB_${name}}")
  endif()
endforeach()

add_library(ctfgen_torch INTERFACE)
target_include_directories(ctfgen_torch SYSTEM INTERFACE
  "${CTFGEN_TORCH_ROOT}/include" "${CTFGEN_TORCH_ROOT}/include/torch/csrc/api/include")
target_compile_definitions(ctfgen_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${_ctfgen_torch_abi})
# Data-parallel training over Gloo needs gloo's headers next to torch's (or installed); without
# them train/distributed.cpp builds and says at run time that Gloo is missing.
find_path(CTFGEN_GLOO_INCLUDE gloo/context.h PATHS "${CTFGEN_TORCH_ROOT}/include")
if(_ctfgen_torch_gloo AND CTFGEN_GLOO_INCLUDE)
  target_compile_definitions(ctfgen_torch INTERFACE USE_DISTRIBUTED USE_C10D_GLOO)
  target_include_directories(ctfgen_torch SYSTEM INTERFACE "${CTFGEN_GLOO_INCLUDE}")
endif()
target_link_libraries(ctfgen_torch INTERFACE
  "${CTFGEN_TORCH_LIB_torch}" "${CTFGEN_TORCH_LIB_torch_cpu}" "${CTFGEN_TORCH_LIB_c10}")
if(_cuda_libs)
  target_link_libraries(ctfgen_torch INTERFACE "-Wl,--no-as-needed" ${_cuda_libs} "-Wl,--as-needed")
  # A pip wheel finds CUDA's own libraries (cuBLAS, cuDNN, ...) in site-packages/nvidia/ through
  # $ORIGIN run paths; the linker is told those folders too, so it can check libtorch_cuda's needs.
  file(GLOB _nv_dirs LIST_DIRECTORIES true "${CTFGEN_TORCH_ROOT}/../nvidia/*/lib"
       "${CTFGEN_TORCH_ROOT}/../nvidia/*/*/lib")
  foreach(dir ${_nv_dirs})
    target_link_options(ctfgen_torch INTERFACE "LINKER:-rpath-link,${dir}")
  endforeach()
endif()
# The programs find the wheel's libraries (and those it loads beside it) without LD_LIBRARY_PATH.
list(APPEND CMAKE_BUILD_RPATH "${_lib}")
list(APPEND CMAKE_INSTALL_RPATH "${_lib}")  # and so does an installed ctfgen (cmake --install)
set(TORCH_LIBRARIES ctfgen_torch)
message(STATUS "libtorch ${CTFGEN_TORCH_VERSION} from ${CTFGEN_TORCH_ROOT} (CUDA ${CTFGEN_TORCH_CUDA}, "
  "C++11 ABI ${_ctfgen_torch_abi}, Gloo ${_ctfgen_torch_gloo} headers ${CTFGEN_GLOO_INCLUDE}, "
  "CUDA libraries: ${_cuda_libs})")
