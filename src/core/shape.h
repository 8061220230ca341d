// Shape checks at module boundaries: CTFGEN_CHECK_SHAPE(x, {B, -1, D}, "what") throws with
// the expected and actual shapes; -1 matches any size. And the value range of integer tensors
// (tokens, labels, indices), which range checks report.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "core/error.h"

namespace ctfgen {

std::string shape_str(c10::IntArrayRef sizes);
std::string shape_str(const std::vector<int64_t>& sizes);
void check_shape(const at::Tensor& t, const std::vector<int64_t>& expected, const char* what);

/// Smallest and largest value of a non-empty integer tensor (Error if empty or floating point).
/// On the CPU a plain scan (a decode step checks a few hundred tokens: cheaper than two
/// reductions and two reads); elsewhere one aminmax and one read (one device sync).
struct IntRange {
  int64_t lo = 0, hi = 0;
};
IntRange int_range(const at::Tensor& t);

}  // namespace ctfgen

#define CTFGEN_CHECK_SHAPE(tensor, ...) ::ctfgen::check_shape((tensor), __VA_ARGS__)
