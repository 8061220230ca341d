#include "core/shape.h"

#include <sstream>

namespace ctfgen {

std::string shape_str(c10::IntArrayRef sizes) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < sizes.size(); ++i) os << (i ? ", " : "") << sizes[i];
  os << "]";
  return os.str();
}

std::string shape_str(const std::vector<int64_t>& sizes) { return shape_str(c10::IntArrayRef(sizes)); }

void check_shape(const at::Tensor& t, const std::vector<int64_t>& expected, const char* what) {
  bool ok = t.defined() && t.dim() == static_cast<int64_t>(expected.size());
  for (size_t i = 0; ok && i < expected.size(); ++i)
    ok = expected[i] < 0 || expected[i] == t.size(static_cast<int64_t>(i));
  if (!ok) {
    std::string e = shape_str(expected);
    for (size_t p = e.find("-1"); p != std::string::npos; p = e.find("-1")) e.replace(p, 2, "*");
    throw Error(str_cat(what, ": shape mismatch (expected ", e, ", got ",
                        t.defined() ? shape_str(t.sizes()) : std::string("undefined"), ")"));
  }
}

}  // namespace ctfgen
