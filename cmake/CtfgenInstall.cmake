# `cmake --install <build> --prefix P` (docs/library.md):
#   P/bin/ctfgen
#   P/lib/libctfgen_core.a
#   P/include/ctfgen/<module>/*.h          every header of src/ but bench_support/, src/ layout
#   P/lib/cmake/ctfgen/ctfgenConfig.cmake  find_package(ctfgen CONFIG) -> ctfgen::core
#                      ctfgenConfigVersion.cmake, ctfgenTargets*.cmake
# ctfgen::core carries its include directories, C++ standard, CTFGEN_VERSION and its link
# dependencies; ctfgenConfig.cmake finds those packages again on the consumer's side (Torch,
# OpenMP, nlohmann_json, and for the static archive's own needs ZLIB, OpenSSL and stb).
# No pkg-config file: libtorch has none on Debian, so a ctfgen.pc could only copy this machine's
# libtorch paths and flags into it, unchecked (docs/library.md).
include(CMakePackageConfigHelpers)

set(CTFGEN_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/ctfgen" CACHE STRING
  "Where the CMake package files go, relative to the install prefix")

install(TARGETS ctfgen RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
set(_ctfgen_export_targets ctfgen_core ctfgen_openmp)
set_target_properties(ctfgen_openmp PROPERTIES EXPORT_NAME openmp)
if(TARGET ctfgen_torch)  # libtorch from a Python install (cmake/TorchFromPython.cmake)
  set_target_properties(ctfgen_torch PROPERTIES EXPORT_NAME torch)
  list(APPEND _ctfgen_export_targets ctfgen_torch)
  set(CTFGEN_PACKAGE_TORCH_FROM_PYTHON ON)
else()
  set(CTFGEN_PACKAGE_TORCH_FROM_PYTHON OFF)
endif()
# cmake/OpenMP.cmake links either OpenMP::OpenMP_CXX (found again by the config) or the wheel's
# own libgomp by path.
get_target_property(_ctfgen_omp_libs ctfgen_openmp INTERFACE_LINK_LIBRARIES)
if("OpenMP::OpenMP_CXX" IN_LIST _ctfgen_omp_libs)
  set(CTFGEN_PACKAGE_FIND_OPENMP ON)
else()
  set(CTFGEN_PACKAGE_FIND_OPENMP OFF)
endif()
install(TARGETS ${_ctfgen_export_targets} EXPORT ctfgenTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})

# Every module header, not only the stable ones (docs/library.md lists those): the stable headers
# include others (models/trunk.h, nn/layers.h, eval/..., ...), and a glob cannot miss one that a
# later change adds to that chain. bench_support/ serves only `ctfgen bench` and bench/.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/src/
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ctfgen
  FILES_MATCHING PATTERN "*.h"
  PATTERN "bench_support" EXCLUDE
  PATTERN "pch.h" EXCLUDE)

install(EXPORT ctfgenTargets NAMESPACE ctfgen:: DESTINATION ${CTFGEN_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/ctfgenConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ctfgenConfig.cmake
  INSTALL_DESTINATION ${CTFGEN_INSTALL_CMAKEDIR})
# 0.x: a minor release may change the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/ctfgenConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ctfgenConfig.cmake ${PROJECT_BINARY_DIR}/ctfgenConfigVersion.cmake
  DESTINATION ${CTFGEN_INSTALL_CMAKEDIR})
