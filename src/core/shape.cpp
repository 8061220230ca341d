#include "core/shape.h"

#include <torch/torch.h>

#include <algorithm>
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

IntRange int_range(const at::Tensor& t) {
  CTFGEN_CHECK(t.defined() && t.numel() > 0, "int_range: empty tensor");
  CTFGEN_CHECK(!at::isFloatingType(t.scalar_type()) && !at::isComplexType(t.scalar_type()),
               "int_range: expected an integer tensor, got ", c10::toString(t.scalar_type()));
  IntRange r;
  if (t.device().is_cpu()) {
    auto v = t.to(torch::kLong).contiguous();
    const int64_t* p = v.data_ptr<int64_t>();
    r.lo = r.hi = p[0];
    for (int64_t i = 1; i < v.numel(); ++i) {
      r.lo = std::min(r.lo, p[i]);
      r.hi = std::max(r.hi, p[i]);
    }
  } else {
    auto [mn, mx] = torch::aminmax(t);
    auto both = torch::stack({mn, mx}).to(torch::kCPU, torch::kLong);
    r.lo = both[0].item<int64_t>();
    r.hi = both[1].item<int64_t>();
  }
  return r;
}

}  // namespace ctfgen
