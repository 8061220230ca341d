#include "nn/rope.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/shape.h"
#include "nn/decode_kernels.h"

namespace ctfgen::nn {

at::Tensor rope_table_2d(int64_t grid, int64_t head_dim, double base, int64_t cls_token_num) {
  CTFGEN_CHECK(grid >= 1, "rope_table_2d: grid must be >= 1, got ", grid);
  CTFGEN_CHECK(head_dim >= 4 && head_dim % 4 == 0,
               "rope_table_2d: head_dim must be a positive multiple of 4, got ", head_dim);
  CTFGEN_CHECK(cls_token_num >= 0, "rope_table_2d: cls_token_num must be >= 0");
  const int64_t half = head_dim / 2;
  const int64_t quarter = head_dim / 4;
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  // theta_k = 1 / base^(2k / half), computed in float32 like the reference.
  auto exponents = torch::arange(0, half, 2, f32).slice(0, 0, quarter) / static_cast<double>(half);
  auto theta = 1.0 / torch::pow(base, exponents);                        // [quarter]
  auto t = torch::arange(grid, f32);                                     // [grid]
  auto angles = torch::outer(t, theta);                                  // [grid, quarter]
  auto rows = angles.unsqueeze(1).expand({grid, grid, quarter});         // row r
  auto cols = angles.unsqueeze(0).expand({grid, grid, quarter});         // column c
  auto cell = torch::cat({rows, cols}, -1);                              // [grid, grid, half]
  auto cs = torch::stack({torch::cos(cell), torch::sin(cell)}, -1).reshape({grid * grid, half, 2});
  auto cls = torch::zeros({cls_token_num, half, 2}, f32);
  return torch::cat({cls, cs}, 0).contiguous();
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& table_rows) {
  CTFGEN_CHECK(x.dim() == 4, "apply_rope: x must be [B, S, H, hd], got ", shape_str(x.sizes()));
  const int64_t S = x.size(1), hd = x.size(3);
  CTFGEN_CHECK_SHAPE(table_rows, {S, hd / 2, 2}, "apply_rope table rows");
  if (rope_fused_supported(x, table_rows)) return rope_fused(x, table_rows);  // inference, fp32
  auto xf = x.to(torch::kFloat32).reshape({x.size(0), S, x.size(2), hd / 2, 2});
  auto x0 = xf.select(-1, 0), x1 = xf.select(-1, 1);           // [B, S, H, hd/2]
  auto cos = table_rows.select(-1, 0).view({1, S, 1, hd / 2});
  auto sin = table_rows.select(-1, 1).view({1, S, 1, hd / 2});
  auto out = torch::stack({x0 * cos - x1 * sin, x1 * cos + x0 * sin}, -1);
  return out.flatten(3).to(x.scalar_type());
}

}  // namespace ctfgen::nn
