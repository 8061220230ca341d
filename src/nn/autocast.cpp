#include "nn/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "core/error.h"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define CTFGEN_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace ctfgen::nn {
namespace {

bool enabled(c10::DeviceType d) {
#ifdef CTFGEN_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(d);
#else
  return d == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}

void set_enabled(c10::DeviceType d, bool on) {
#ifdef CTFGEN_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(d, on);
#else
  if (d == c10::DeviceType::CPU) at::autocast::set_cpu_enabled(on);
  else at::autocast::set_enabled(on);
#endif
}

at::ScalarType get_dtype(c10::DeviceType d) {
#ifdef CTFGEN_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(d);
#else
  return d == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                   : at::autocast::get_autocast_gpu_dtype();
#endif
}

void set_dtype(c10::DeviceType d, at::ScalarType t) {
#ifdef CTFGEN_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(d, t);
#else
  if (d == c10::DeviceType::CPU) at::autocast::set_autocast_cpu_dtype(t);
  else at::autocast::set_autocast_gpu_dtype(t);
#endif
}

}  // namespace

std::optional<at::ScalarType> parse_amp(const std::string& name) {
  if (name == "off") return std::nullopt;
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  throw UsageError(str_cat("amp must be 'off', 'bf16' or 'fp16', got '", name, "'"));
}

std::optional<at::ScalarType> autocast_dtype(c10::DeviceType device) {
  if (!enabled(device)) return std::nullopt;
  return get_dtype(device);
}

AutocastGuard::AutocastGuard(c10::DeviceType device, std::optional<at::ScalarType> dtype) {
  if (!dtype) return;
  CTFGEN_CHECK_USAGE(device == c10::DeviceType::CPU || device == c10::DeviceType::CUDA,
                     "autocast is supported on cpu and cuda, not ", c10::DeviceTypeName(device));
  CTFGEN_CHECK_USAGE(!(device == c10::DeviceType::CPU && *dtype == at::kHalf),
                     "fp16 autocast is not supported on cpu; use bf16");
  device_ = device;
  prev_enabled_ = enabled(device);
  prev_dtype_ = get_dtype(device);
  set_dtype(device, *dtype);
  set_enabled(device, true);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // Casts of the weights are cached while autocast is on; drop them when the outermost guard
  // closes so the next step sees the updated weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_enabled(device_, prev_enabled_);
  set_dtype(device_, prev_dtype_);
}

}  // namespace ctfgen::nn
