// The LlamaGen VQ tokenizer: encoder -> quant_conv -> quantize -> post_quant_conv -> decoder
// (LlamaGen vq_model.py: VQModel). Registered names equal LlamaGen's state-dict keys
// (encoder.*, decoder.*, quantize.codebook_used, quantize.embedding.weight, quant_conv.*,
// post_quant_conv.*), so released LlamaGen weights load by name.
//
// Pixels: inputs are in [-1, 1] ((x/255 - 0.5)/0.5); decoder outputs are raw (nominally [-1, 1]).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "vq/decoder.h"
#include "vq/encoder.h"
#include "vq/quantizer.h"
#include "vq/vq_config.h"

namespace ctfgen::vq {

struct VQLosses {
  at::Tensor codebook;  // scalar, weight 1
  at::Tensor commit;    // scalar, already scaled by commit_beta
  at::Tensor entropy;   // scalar, already scaled by entropy_loss_ratio
  /// codebook + commit + entropy.
  at::Tensor total() const { return codebook + commit + entropy; }
};

struct VQEncodeOutput {
  at::Tensor z_q;      // [B, D, h, w] quantised latents (straight-through)
  at::Tensor indices;  // [B, h, w] int64
  VQLosses losses;
  at::Tensor z_flat;   // [B*h*w, D] normalised encoder vectors, detached (for dead-code restarts)
};

struct VQForwardOutput {
  at::Tensor recon;    // [B, C, H, W]
  at::Tensor indices;  // [B, h, w] int64
  VQLosses losses;
  at::Tensor z_flat;   // [B*h*w, D], detached
};

struct VQModelImpl : torch::nn::Module {
  /// Builds the model and initialises every parameter from make_generator(seed).
  explicit VQModelImpl(const VQConfig& config, uint64_t seed = 0);

  /// x: [B, C, H, W] -> z_q [B, D, h, w], indices [B, h, w], losses.
  VQEncodeOutput encode(const at::Tensor& x);
  /// z_q: [B, D, h, w] -> [B, C, H, W].
  at::Tensor decode(const at::Tensor& z_q);
  /// indices: [B, h, w] integer codes in [0, V) -> [B, C, H, W].
  at::Tensor decode_indices(const at::Tensor& indices);
  /// x: [B, C, H, W] -> reconstruction and losses.
  VQForwardOutput forward(const at::Tensor& x);

  /// The L2-normalised lookup table [V, D] (the raw rows if codebook_l2_norm is false).
  at::Tensor normalized_codebook() const { return quantize->normalized_codebook(); }
  /// Token grid (h, w) for an H x W image; throws UsageError if not divisible.
  std::pair<int64_t, int64_t> grid_size(int64_t height, int64_t width) const {
    return config.grid_size(height, width);
  }

  VQConfig config;
  Encoder encoder{nullptr};
  Decoder decoder{nullptr};
  VectorQuantizer quantize{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(VQModel);

/// Encodes images in batches without autograd (eval mode is the caller's choice).
/// x: [N, C, H, W] float in [-1, 1] (any device; batches run on the model's) -> [N, h, w] int64
/// on the CPU.
at::Tensor encode_to_indices(VQModel& model, const at::Tensor& x, int64_t batch_size = 64);
/// Decodes codes in batches without autograd. codes: [N, h, w] (any device) -> [N, C, H, W] raw
/// outputs on the CPU.
at::Tensor decode_from_indices(VQModel& model, const at::Tensor& codes, int64_t batch_size = 64);

/// Writes `model` as a component file of kind "vq" (config = model.config, meta as given plus
/// "tokenizer_hash").
void save_vq(const std::string& path, VQModel& model,
             nlohmann::json meta = nlohmann::json::object());
/// Loads a kind "vq" component file strictly (every tensor name and shape must match the config);
/// the model is returned in eval mode on default_device() (core/device.h). Throws Error naming
/// the file.
VQModel load_vq(const std::string& path);

/// io::tokenizer_hash over the model's tensors (codebook_used excluded).
std::string vq_tokenizer_hash(const VQModel& model);

}  // namespace ctfgen::vq
