// Shape checks at module boundaries: CTFGEN_CHECK_SHAPE(x, {B, -1, D}, "what") throws with
// the expected and actual shapes; -1 matches any size.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace ctfgen {

std::string shape_str(c10::IntArrayRef sizes);
std::string shape_str(const std::vector<int64_t>& sizes);
void check_shape(const at::Tensor& t, const std::vector<int64_t>& expected, const char* what);

}  // namespace ctfgen

#define CTFGEN_CHECK_SHAPE(tensor, ...) ::ctfgen::check_shape((tensor), __VA_ARGS__)
