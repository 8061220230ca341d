// Where tensors live. ctfgen runs on the CPU or on one CUDA device; the choice is a process-wide
// setting like the thread count (`ctfgen --device cuda:0 <command>`), read by the pipelines when
// they build or load a model. Library code below the pipelines takes its device from its inputs
// (a model's parameters, a batch), never from this setting, so it works with tensors anywhere.
//
// Randomness stays device-independent: every random draw of ctfgen is made on the CPU from the
// one seeded generator and copied to the device (core/rng.h), so a seed gives the same random
// numbers on every device, and the same tokens wherever the logits agree.
#pragma once
#include <c10/core/Device.h>
#include <torch/nn/module.h>

#include <string>

namespace ctfgen {

/// Parses "cpu", "cuda" (= cuda:0, or cuda:LOCAL_RANK when that variable is set, as torchrun does
/// for each rank of a data-parallel run) or "cuda:N". Throws UsageError naming the value when it
/// is malformed, when this libtorch was built without CUDA or sees no CUDA device, or when N is
/// not below the number of devices.
c10::Device parse_device(const std::string& text);

/// The process-wide device the pipelines put models and batches on (default cpu). Setting a CUDA
/// device also turns TF32 off (cuBLAS, cuDNN) and cuDNN's autotuning off and its determinism on,
/// so results match the CPU's within fp32 rounding.
c10::Device default_device();
void set_default_device(c10::Device device);

/// The device of a module's first parameter (or buffer); cpu for a module without tensors.
c10::Device module_device(const torch::nn::Module& module);

/// Waits for the device's queued work (a no-op on the CPU); timers call it before reading the
/// clock.
void synchronize(c10::Device device);

}  // namespace ctfgen
