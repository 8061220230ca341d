# The libraries besides libtorch. On Debian they come from the -dev packages scripts/setup.sh
# installs. On a machine without them and without a package registry (the lent GPU machine),
# CTFGEN_DEPS_DIR names a folder made by scripts/device_bundle.sh: the header-only libraries
# (nlohmann/json, CLI11, stb) and the zlib and OpenSSL headers under include/, googletest's sources
# under googletest/; zlib and libcrypto are then linked from the machine's runtime libraries.
set(CTFGEN_DEPS_DIR "" CACHE PATH
  "Fallback folder of dependencies for machines without the Debian -dev packages (scripts/device_bundle.sh)")

function(ctfgen_fallback_target name)
  if(NOT CTFGEN_DEPS_DIR)
    message(FATAL_ERROR "${name} not found: install the Debian packages (scripts/setup.sh) or "
      "give -DCTFGEN_DEPS_DIR=<folder made by scripts/device_bundle.sh>")
  endif()
  add_library(${name} INTERFACE IMPORTED GLOBAL)
  target_include_directories(${name} SYSTEM INTERFACE "${CTFGEN_DEPS_DIR}/include")
  message(STATUS "${name}: headers from ${CTFGEN_DEPS_DIR}/include")
endfunction()

function(ctfgen_fallback_library name)  # name, then the library file names to look for
  ctfgen_fallback_target(${name})
  find_library(_found NAMES ${ARGN})
  if(NOT _found)
    message(FATAL_ERROR "${name}: none of ${ARGN} found on this machine")
  endif()
  target_link_libraries(${name} INTERFACE "${_found}")
  unset(_found CACHE)
endfunction()

find_package(nlohmann_json 3.10 QUIET)
if(NOT nlohmann_json_FOUND)
  ctfgen_fallback_target(nlohmann_json::nlohmann_json)
endif()
find_package(CLI11 QUIET)
if(NOT CLI11_FOUND)
  ctfgen_fallback_target(CLI11::CLI11)
endif()
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(STB QUIET IMPORTED_TARGET stb)
endif()
if(NOT TARGET PkgConfig::STB)
  # Debian's libstb.so holds the implementations; here they are compiled from the headers.
  ctfgen_fallback_target(PkgConfig::STB)
  set(_stb_impl "${CMAKE_BINARY_DIR}/ctfgen_stb_impl.c")
  file(WRITE "${_stb_impl}" "#define STB_IMAGE_IMPLEMENTATION\n#include <stb/stb_image.h>\n"
    "#define STB_IMAGE_WRITE_IMPLEMENTATION\n#include <stb/stb_image_write.h>\n"
    "#define STB_IMAGE_RESIZE_IMPLEMENTATION\n#include <stb/stb_image_resize.h>\n")
  enable_language(C)
  add_library(ctfgen_stb_impl STATIC "${_stb_impl}")
  set_target_properties(ctfgen_stb_impl PROPERTIES POSITION_INDEPENDENT_CODE ON UNITY_BUILD OFF)
  target_include_directories(ctfgen_stb_impl SYSTEM PRIVATE "${CTFGEN_DEPS_DIR}/include")
  target_link_libraries(PkgConfig::STB INTERFACE ctfgen_stb_impl m)
endif()
find_package(ZLIB QUIET)
if(NOT ZLIB_FOUND)
  ctfgen_fallback_library(ZLIB::ZLIB z libz.so.1)
endif()
find_package(OpenSSL QUIET COMPONENTS Crypto)
if(NOT OpenSSL_FOUND)
  ctfgen_fallback_library(OpenSSL::Crypto crypto libcrypto.so.3)
endif()

# GoogleTest: the installed package, else its sources from the fallback folder.
macro(ctfgen_find_gtest)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    if(NOT CTFGEN_DEPS_DIR OR NOT EXISTS "${CTFGEN_DEPS_DIR}/googletest/CMakeLists.txt")
      message(FATAL_ERROR "GoogleTest not found: install googletest/libgtest-dev (scripts/setup.sh) "
        "or give -DCTFGEN_DEPS_DIR with googletest/ inside")
    endif()
    set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
    set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
    add_subdirectory("${CTFGEN_DEPS_DIR}/googletest" "${CMAKE_BINARY_DIR}/googletest" EXCLUDE_FROM_ALL)
    if(NOT TARGET GTest::gtest)
      add_library(GTest::gtest ALIAS gtest)
    endif()
  endif()
endmacro()
