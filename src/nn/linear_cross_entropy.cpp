#include "nn/linear_cross_entropy.h"

#include <torch/autograd.h>
#include <torch/torch.h>

#include <algorithm>

#include "core/error.h"
#include "core/shape.h"
#include "nn/autocast.h"

namespace ctfgen::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per chunk for a vocabulary of V under the element budget.
int64_t chunk_rows(int64_t budget, int64_t V) { return std::max<int64_t>(1, budget / V); }

// The loss's gradient is known once the forward has a chunk's logits: d loss / d logits =
// (softmax(logits) - onehot(target)) / N for an upstream gradient of 1. So the forward turns
// each chunk straight into its share of d loss / d x and d loss / d w (when they are wanted)
// and drops the logits; backward only scales those by the upstream gradient. The same three
// products per chunk as the plain path's forward and backward, and no [N, V] tensor.
class LinearCrossEntropyFn : public torch::autograd::Function<LinearCrossEntropyFn> {
 public:
  // Inputs: x [N, D], w [V, D], target [N] int64; the chunk row count, the compute dtype and
  // which gradients to form ride along as plain values. Output: the mean loss, float32 scalar.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& target, int64_t rows, int64_t compute_dtype,
                            bool grad_x, bool grad_w) {
    const auto cdt = static_cast<at::ScalarType>(compute_dtype);
    const int64_t N = x.size(0);
    auto xc = x.to(cdt), wc = w.to(cdt);
    auto total = at::zeros({}, x.options().dtype(at::kFloat));
    at::Tensor gx, gw;
    if (grad_x) gx = at::empty_like(x, at::MemoryFormat::Contiguous);
    if (grad_w) gw = at::zeros_like(w, at::MemoryFormat::Contiguous);
    // Products straight into the gradients when they have the compute dtype (fp32 training).
    const bool gx_direct = grad_x && gx.scalar_type() == cdt;
    const bool gw_direct = grad_w && gw.scalar_type() == cdt;
    const bool scale_early = cdt == at::kHalf;
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
      const int64_t n = std::min(rows, N - r0);
      auto xr = xc.narrow(0, r0, n);
      auto t = target.narrow(0, r0, n).unsqueeze(1);                    // [n, 1]
      auto g = at::log_softmax(at::mm(xr, wc.t()).to(at::kFloat), 1);  // [n, V] log p
      total -= g.gather(1, t).sum();
      if (!grad_x && !grad_w) continue;
      g.exp_().scatter_add_(1, t, at::full({n, 1}, -1.0, g.options()));  // p - onehot
      // The 1/N of the mean is applied to the [n, D] and [V, D] products, not to g, except in
      // fp16, whose range a sum over many rows could exceed.
      if (scale_early) g.div_(static_cast<double>(N));
      auto gc = g.to(cdt);
      if (gx_direct) {
        auto out = gx.narrow(0, r0, n);
        at::mm_out(out, gc, wc);
      } else if (grad_x) {
        gx.narrow(0, r0, n).copy_(at::mm(gc, wc));
      }
      if (gw_direct) gw.addmm_(gc.t(), xr);
      else if (grad_w) gw.add_(at::mm(gc.t(), xr));
    }
    if (!scale_early) {
      if (grad_x) gx.div_(static_cast<double>(N));
      if (grad_w) gw.div_(static_cast<double>(N));
    }
    // Saved variables (not saved_data): autograd frees them once backward has run, and a
    // second backward without retain_graph fails as it should.
    ctx->save_for_backward({gx, gw});
    return total / static_cast<double>(N);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    CTFGEN_CHECK(!at::GradMode::is_enabled(),
                 "linear_cross_entropy: double backward (create_graph) is not supported");
    const auto saved = ctx->get_saved_variables();
    auto scaled = [&](const at::Tensor& g) {
      return g.defined() ? g * grad_out[0].to(g.scalar_type()) : at::Tensor();
    };
    return {scaled(saved[0]), scaled(saved[1]), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor linear_cross_entropy(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target,
                                int64_t chunk_elements) {
  CTFGEN_CHECK(x.dim() == 2 && at::isFloatingType(x.scalar_type()),
               "linear_cross_entropy: x must be [N, D] floating point, got ",
               shape_str(x.sizes()), " ", x.scalar_type());
  CTFGEN_CHECK(w.dim() == 2 && w.size(1) == x.size(1) && at::isFloatingType(w.scalar_type()),
               "linear_cross_entropy: w must be [V, ", x.size(1), "] floating point, got ",
               shape_str(w.sizes()), " ", w.scalar_type());
  CTFGEN_CHECK(target.dim() == 1 && target.size(0) == x.size(0) &&
                   !at::isFloatingType(target.scalar_type()),
               "linear_cross_entropy: target must be [", x.size(0), "] integers, got ",
               shape_str(target.sizes()), " ", target.scalar_type());
  CTFGEN_CHECK(x.device() == w.device(), "linear_cross_entropy: x is on ", x.device(),
               ", w on ", w.device());
  CTFGEN_CHECK(x.size(0) >= 1 && w.size(0) >= 1, "linear_cross_entropy: needs N >= 1 and V >= 1");
  CTFGEN_CHECK(chunk_elements >= 1, "linear_cross_entropy: chunk_elements must be >= 1, got ",
               chunk_elements);
  const int64_t V = w.size(0);
  const auto [lo, hi] = int_range(target);
  CTFGEN_CHECK(lo >= 0 && hi < V, "linear_cross_entropy: target must be in [0, ", V,
               "), got range [", lo, ", ", hi, "]");
  // Autocast lowers only fp32/fp16/bf16 operands (not fp64), as it would for the plain linear.
  auto lowerable = [](at::ScalarType t) {
    return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
  };
  const auto amp = autocast_dtype(x.device().type());
  const at::ScalarType cdt = amp && lowerable(x.scalar_type()) && lowerable(w.scalar_type())
                                 ? *amp
                                 : at::promote_types(x.scalar_type(), w.scalar_type());
  // Gradients are formed in the forward only where autograd will ask for them.
  const bool grad = at::GradMode::is_enabled();
  return LinearCrossEntropyFn::apply(x, w, target.to(x.device(), at::kLong),
                                     chunk_rows(chunk_elements, V), static_cast<int64_t>(cdt),
                                     grad && x.requires_grad(), grad && w.requires_grad());
}

}  // namespace ctfgen::nn
