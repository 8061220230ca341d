// Mixed precision for training forwards: an RAII guard over libtorch's autocast state that
// builds against libtorch 1.13 (per-device setter functions) and 2.4+ (device-type arguments).
//
//   { nn::AutocastGuard amp(torch::kCPU, nn::parse_amp("bf16"));
//     loss = model->forward_train(...); }          // matmuls in bf16, reductions in fp32
//   loss.backward();                               // outside the guard, as autocast expects
#pragma once
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <optional>
#include <string>

namespace ctfgen::nn {

/// "off" -> nullopt, "bf16" -> kBFloat16, "fp16" -> kHalf; anything else throws UsageError
/// naming the value.
std::optional<at::ScalarType> parse_amp(const std::string& name);

/// The dtype autocast casts products to on `device` when it is on there, else nullopt.
std::optional<at::ScalarType> autocast_dtype(c10::DeviceType device);

class AutocastGuard {
 public:
  /// Enables autocast to `dtype` on `device` (kCPU or kCUDA) for the guard's lifetime; a nullopt
  /// dtype makes the guard a no-op. fp16 is refused on CPU.
  AutocastGuard(c10::DeviceType device, std::optional<at::ScalarType> dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_ = c10::DeviceType::CPU;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

}  // namespace ctfgen::nn
