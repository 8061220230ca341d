#include "vq/vq_model.h"

#include <torch/torch.h>

#include "core/device.h"
#include "core/rng.h"
#include "core/shape.h"
#include "io/checkpoint.h"
#include "io/tensor_hash.h"
#include "io/torch_import.h"

namespace ctfgen::vq {

VQModelImpl::VQModelImpl(const VQConfig& cfg, uint64_t seed) : config(cfg) {
  config.validate();
  // Registration order = LlamaGen's state-dict order.
  encoder = register_module("encoder", Encoder(config));
  decoder = register_module("decoder", Decoder(config));
  quantize = register_module("quantize", VectorQuantizer(config));
  quant_conv = register_module(
      "quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.z_channels,
                                                               config.codebook_dim, 1)));
  post_quant_conv = register_module(
      "post_quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.codebook_dim,
                                                                    config.z_channels, 1)));
  auto gen = make_generator(seed);
  init_conv_default(*this, gen);
  quantize->reset_codebook(gen);
}

VQEncodeOutput VQModelImpl::encode(const at::Tensor& x) {
  CTFGEN_CHECK_SHAPE(x, {-1, config.in_channels, -1, -1}, "VQ encode input");
  const int64_t f = config.downsample_factor();
  CTFGEN_CHECK_USAGE(x.size(2) % f == 0 && x.size(3) % f == 0, "VQ encode: image size ", x.size(2),
                     "x", x.size(3), " is not a multiple of the tokenizer's down-sampling factor ", f);
  auto q = quantize(quant_conv(encoder(x)));
  VQEncodeOutput out;
  out.z_q = q.z_q;
  out.indices = q.indices;
  out.losses = {q.codebook_loss, q.commit_loss, q.entropy_loss};
  out.z_flat = q.z_flat;
  return out;
}

at::Tensor VQModelImpl::decode(const at::Tensor& z_q) {
  CTFGEN_CHECK_SHAPE(z_q, {-1, config.codebook_dim, -1, -1}, "VQ decode input");
  return decoder(post_quant_conv(z_q));
}

at::Tensor VQModelImpl::decode_indices(const at::Tensor& indices) {
  return decode(quantize->lookup(indices));
}

VQForwardOutput VQModelImpl::forward(const at::Tensor& x) {
  auto e = encode(x);
  VQForwardOutput out;
  out.recon = decode(e.z_q);
  out.indices = e.indices;
  out.losses = e.losses;
  out.z_flat = e.z_flat;
  return out;
}

at::Tensor encode_to_indices(VQModel& model, const at::Tensor& x, int64_t batch_size) {
  CTFGEN_CHECK(batch_size >= 1, "encode_to_indices: batch_size must be >= 1, got ", batch_size);
  CTFGEN_CHECK_SHAPE(x, {-1, model->config.in_channels, -1, -1}, "encode_to_indices input");
  torch::NoGradGuard no_grad;
  const int64_t n = x.size(0);
  auto [h, w] = model->grid_size(x.size(2), x.size(3));
  auto out = torch::empty({n, h, w}, torch::kLong);  // on the CPU, like the images
  const c10::Device device = module_device(*model);
  for (int64_t i = 0; i < n; i += batch_size) {
    const int64_t j = std::min(n, i + batch_size);
    out.slice(0, i, j).copy_(model->encode(x.slice(0, i, j).to(device, torch::kFloat)).indices);
  }
  return out;
}

at::Tensor decode_from_indices(VQModel& model, const at::Tensor& codes, int64_t batch_size) {
  CTFGEN_CHECK(batch_size >= 1, "decode_from_indices: batch_size must be >= 1, got ", batch_size);
  CTFGEN_CHECK(codes.dim() == 3, "decode_from_indices: codes must be [N, h, w], got ",
               shape_str(codes.sizes()));
  torch::NoGradGuard no_grad;
  const int64_t n = codes.size(0);
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < n; i += batch_size)
    parts.push_back(model->decode_indices(codes.slice(0, i, std::min(n, i + batch_size))).cpu());
  CTFGEN_CHECK(!parts.empty(), "decode_from_indices: no codes given");
  return torch::cat(parts, 0);
}

std::string vq_tokenizer_hash(const VQModel& model) {
  return io::tokenizer_hash(io::module_tensors(*model));
}

void save_vq(const std::string& path, VQModel& model, nlohmann::json meta) {
  meta["tokenizer_hash"] = vq_tokenizer_hash(model);
  io::save_component(path, "vq", model->config.to_json(), io::module_tensors(*model), meta);
}

VQModel load_vq(const std::string& path) {
  auto c = io::load_component_or_torch(path, "vq");
  VQConfig config;
  try {
    config = VQConfig::from_json(c.config);
    config.validate();
  } catch (const UsageError& e) {
    throw Error(str_cat(path, ": bad VQ config: ", e.what()));
  }
  VQModel model(config);
  io::load_module_strict(*model, c.file);
  model->eval();
  model->to(default_device());
  return model;
}

}  // namespace ctfgen::vq
