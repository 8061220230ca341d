#include "eval/inception.h"

#include <torch/torch.h>

#include "core/device.h"
#include "core/error.h"
#include "core/json_config.h"
#include "core/log.h"
#include "core/shape.h"
#include "io/checkpoint.h"
#include "io/tensor_hash.h"

namespace ctfgen::eval {

nlohmann::json InceptionConfig::to_json() const { return fields_to_json(*this); }

InceptionConfig InceptionConfig::from_json(const nlohmann::json& j) {
  auto c = fields_from_json<InceptionConfig>(j, "inception config");
  c.validate();
  return c;
}

void InceptionConfig::validate() const {
  CTFGEN_CHECK_USAGE(variant == "fid" || variant == "torchvision",
                     "inception config: variant must be 'fid' or 'torchvision', got '", variant,
                     "'");
  CTFGEN_CHECK_USAGE(num_classes >= 1 && num_classes <= 100000,
                     "inception config: num_classes must be in [1, 100000], got ", num_classes);
}

namespace {

at::Tensor avg3(const at::Tensor& x, bool count_include_pad) {
  return at::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}, /*ceil_mode=*/false, count_include_pad);
}

at::Tensor max3s2(const at::Tensor& x) { return at::max_pool2d(x, {3, 3}, {2, 2}); }

}  // namespace

BasicConv2dImpl::BasicConv2dImpl(int64_t in, int64_t out, std::vector<int64_t> kernel,
                                 std::vector<int64_t> stride, std::vector<int64_t> padding) {
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, torch::IntArrayRef(kernel))
                                    .stride(torch::IntArrayRef(stride))
                                    .padding(torch::IntArrayRef(padding))
                                    .bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(out).eps(1e-3)));
}

at::Tensor BasicConv2dImpl::forward(const at::Tensor& x) {
  return torch::relu(bn->forward(conv->forward(x)));
}

InceptionAImpl::InceptionAImpl(int64_t in, int64_t pool_features, bool fid_) : fid(fid_) {
  branch1x1 = register_module("branch1x1", BasicConv2d(in, 64, std::vector<int64_t>{1, 1}));
  branch5x5_1 = register_module("branch5x5_1", BasicConv2d(in, 48, std::vector<int64_t>{1, 1}));
  branch5x5_2 = register_module(
      "branch5x5_2", BasicConv2d(48, 64, std::vector<int64_t>{5, 5}, std::vector<int64_t>{1, 1},
                                 std::vector<int64_t>{2, 2}));
  branch3x3dbl_1 =
      register_module("branch3x3dbl_1", BasicConv2d(in, 64, std::vector<int64_t>{1, 1}));
  branch3x3dbl_2 = register_module(
      "branch3x3dbl_2", BasicConv2d(64, 96, std::vector<int64_t>{3, 3},
                                    std::vector<int64_t>{1, 1}, std::vector<int64_t>{1, 1}));
  branch3x3dbl_3 = register_module(
      "branch3x3dbl_3", BasicConv2d(96, 96, std::vector<int64_t>{3, 3},
                                    std::vector<int64_t>{1, 1}, std::vector<int64_t>{1, 1}));
  branch_pool =
      register_module("branch_pool", BasicConv2d(in, pool_features, std::vector<int64_t>{1, 1}));
}

at::Tensor InceptionAImpl::forward(const at::Tensor& x) {
  auto b1 = branch1x1->forward(x);
  auto b5 = branch5x5_2->forward(branch5x5_1->forward(x));
  auto b3 = branch3x3dbl_3->forward(branch3x3dbl_2->forward(branch3x3dbl_1->forward(x)));
  auto bp = branch_pool->forward(avg3(x, /*count_include_pad=*/!fid));
  return torch::cat({b1, b5, b3, bp}, 1);
}

InceptionBImpl::InceptionBImpl(int64_t in) {
  branch3x3 = register_module("branch3x3", BasicConv2d(in, 384, std::vector<int64_t>{3, 3},
                                                       std::vector<int64_t>{2, 2}));
  branch3x3dbl_1 =
      register_module("branch3x3dbl_1", BasicConv2d(in, 64, std::vector<int64_t>{1, 1}));
  branch3x3dbl_2 = register_module(
      "branch3x3dbl_2", BasicConv2d(64, 96, std::vector<int64_t>{3, 3},
                                    std::vector<int64_t>{1, 1}, std::vector<int64_t>{1, 1}));
  branch3x3dbl_3 = register_module(
      "branch3x3dbl_3",
      BasicConv2d(96, 96, std::vector<int64_t>{3, 3}, std::vector<int64_t>{2, 2}));
}

at::Tensor InceptionBImpl::forward(const at::Tensor& x) {
  auto b3 = branch3x3->forward(x);
  auto bd = branch3x3dbl_3->forward(branch3x3dbl_2->forward(branch3x3dbl_1->forward(x)));
  return torch::cat({b3, bd, max3s2(x)}, 1);
}

InceptionCImpl::InceptionCImpl(int64_t in, int64_t c7, bool fid_) : fid(fid_) {
  const std::vector<int64_t> k1{1, 1}, k17{1, 7}, k71{7, 1}, s1{1, 1}, p17{0, 3}, p71{3, 0};
  branch1x1 = register_module("branch1x1", BasicConv2d(in, 192, k1));
  branch7x7_1 = register_module("branch7x7_1", BasicConv2d(in, c7, k1));
  branch7x7_2 = register_module("branch7x7_2", BasicConv2d(c7, c7, k17, s1, p17));
  branch7x7_3 = register_module("branch7x7_3", BasicConv2d(c7, 192, k71, s1, p71));
  branch7x7dbl_1 = register_module("branch7x7dbl_1", BasicConv2d(in, c7, k1));
  branch7x7dbl_2 = register_module("branch7x7dbl_2", BasicConv2d(c7, c7, k71, s1, p71));
  branch7x7dbl_3 = register_module("branch7x7dbl_3", BasicConv2d(c7, c7, k17, s1, p17));
  branch7x7dbl_4 = register_module("branch7x7dbl_4", BasicConv2d(c7, c7, k71, s1, p71));
  branch7x7dbl_5 = register_module("branch7x7dbl_5", BasicConv2d(c7, 192, k17, s1, p17));
  branch_pool = register_module("branch_pool", BasicConv2d(in, 192, k1));
}

at::Tensor InceptionCImpl::forward(const at::Tensor& x) {
  auto b1 = branch1x1->forward(x);
  auto b7 = branch7x7_3->forward(branch7x7_2->forward(branch7x7_1->forward(x)));
  auto bd = branch7x7dbl_1->forward(x);
  bd = branch7x7dbl_3->forward(branch7x7dbl_2->forward(bd));
  bd = branch7x7dbl_5->forward(branch7x7dbl_4->forward(bd));
  auto bp = branch_pool->forward(avg3(x, /*count_include_pad=*/!fid));
  return torch::cat({b1, b7, bd, bp}, 1);
}

InceptionDImpl::InceptionDImpl(int64_t in) {
  const std::vector<int64_t> k1{1, 1}, k3{3, 3}, s1{1, 1}, s2{2, 2};
  branch3x3_1 = register_module("branch3x3_1", BasicConv2d(in, 192, k1));
  branch3x3_2 = register_module("branch3x3_2", BasicConv2d(192, 320, k3, s2));
  branch7x7x3_1 = register_module("branch7x7x3_1", BasicConv2d(in, 192, k1));
  branch7x7x3_2 = register_module(
      "branch7x7x3_2", BasicConv2d(192, 192, std::vector<int64_t>{1, 7}, s1, std::vector<int64_t>{0, 3}));
  branch7x7x3_3 = register_module(
      "branch7x7x3_3", BasicConv2d(192, 192, std::vector<int64_t>{7, 1}, s1, std::vector<int64_t>{3, 0}));
  branch7x7x3_4 = register_module("branch7x7x3_4", BasicConv2d(192, 192, k3, s2));
}

at::Tensor InceptionDImpl::forward(const at::Tensor& x) {
  auto b3 = branch3x3_2->forward(branch3x3_1->forward(x));
  auto b7 = branch7x7x3_1->forward(x);
  b7 = branch7x7x3_4->forward(branch7x7x3_3->forward(branch7x7x3_2->forward(b7)));
  return torch::cat({b3, b7, max3s2(x)}, 1);
}

InceptionEImpl::InceptionEImpl(int64_t in, EPool pool_) : pool(pool_) {
  const std::vector<int64_t> k1{1, 1}, k13{1, 3}, k31{3, 1}, k3{3, 3}, s1{1, 1}, p13{0, 1},
      p31{1, 0}, p3{1, 1};
  branch1x1 = register_module("branch1x1", BasicConv2d(in, 320, k1));
  branch3x3_1 = register_module("branch3x3_1", BasicConv2d(in, 384, k1));
  branch3x3_2a = register_module("branch3x3_2a", BasicConv2d(384, 384, k13, s1, p13));
  branch3x3_2b = register_module("branch3x3_2b", BasicConv2d(384, 384, k31, s1, p31));
  branch3x3dbl_1 = register_module("branch3x3dbl_1", BasicConv2d(in, 448, k1));
  branch3x3dbl_2 = register_module("branch3x3dbl_2", BasicConv2d(448, 384, k3, s1, p3));
  branch3x3dbl_3a = register_module("branch3x3dbl_3a", BasicConv2d(384, 384, k13, s1, p13));
  branch3x3dbl_3b = register_module("branch3x3dbl_3b", BasicConv2d(384, 384, k31, s1, p31));
  branch_pool = register_module("branch_pool", BasicConv2d(in, 192, k1));
}

at::Tensor InceptionEImpl::forward(const at::Tensor& x) {
  auto b1 = branch1x1->forward(x);
  auto t = branch3x3_1->forward(x);
  auto b3 = torch::cat({branch3x3_2a->forward(t), branch3x3_2b->forward(t)}, 1);
  auto d = branch3x3dbl_2->forward(branch3x3dbl_1->forward(x));
  auto bd = torch::cat({branch3x3dbl_3a->forward(d), branch3x3dbl_3b->forward(d)}, 1);
  at::Tensor pooled;
  switch (pool) {
    case EPool::AvgIncludePad: pooled = avg3(x, true); break;
    case EPool::AvgExcludePad: pooled = avg3(x, false); break;
    case EPool::Max: pooled = at::max_pool2d(x, {3, 3}, {1, 1}, {1, 1}); break;
  }
  return torch::cat({b1, b3, bd, branch_pool->forward(pooled)}, 1);
}

InceptionV3Impl::InceptionV3Impl(InceptionConfig config_) : config(std::move(config_)) {
  config.validate();
  const bool fid = config.fid();
  const std::vector<int64_t> k1{1, 1}, k3{3, 3}, s1{1, 1}, s2{2, 2}, p1{1, 1};
  Conv2d_1a_3x3 = register_module("Conv2d_1a_3x3", BasicConv2d(3, 32, k3, s2));
  Conv2d_2a_3x3 = register_module("Conv2d_2a_3x3", BasicConv2d(32, 32, k3));
  Conv2d_2b_3x3 = register_module("Conv2d_2b_3x3", BasicConv2d(32, 64, k3, s1, p1));
  Conv2d_3b_1x1 = register_module("Conv2d_3b_1x1", BasicConv2d(64, 80, k1));
  Conv2d_4a_3x3 = register_module("Conv2d_4a_3x3", BasicConv2d(80, 192, k3));
  Mixed_5b = register_module("Mixed_5b", InceptionA(192, 32, fid));
  Mixed_5c = register_module("Mixed_5c", InceptionA(256, 64, fid));
  Mixed_5d = register_module("Mixed_5d", InceptionA(288, 64, fid));
  Mixed_6a = register_module("Mixed_6a", InceptionB(288));
  Mixed_6b = register_module("Mixed_6b", InceptionC(768, 128, fid));
  Mixed_6c = register_module("Mixed_6c", InceptionC(768, 160, fid));
  Mixed_6d = register_module("Mixed_6d", InceptionC(768, 160, fid));
  Mixed_6e = register_module("Mixed_6e", InceptionC(768, 192, fid));
  Mixed_7a = register_module("Mixed_7a", InceptionD(768));
  Mixed_7b = register_module("Mixed_7b",
                             InceptionE(1280, fid ? EPool::AvgExcludePad : EPool::AvgIncludePad));
  Mixed_7c = register_module("Mixed_7c", InceptionE(2048, fid ? EPool::Max : EPool::AvgIncludePad));
  fc = register_module("fc", torch::nn::Linear(2048, config.num_classes));
}

at::Tensor InceptionV3Impl::features(const at::Tensor& input) {
  CTFGEN_CHECK_SHAPE(input, {-1, 3, -1, -1}, "InceptionV3 input");
  auto x = input;
  if (config.resize_input && (x.size(2) != 299 || x.size(3) != 299))
    x = at::upsample_bilinear2d(x, {299, 299}, /*align_corners=*/false);
  CTFGEN_CHECK(x.size(2) >= 75 && x.size(3) >= 75, "InceptionV3: input ", shape_str(x.sizes()),
               " is smaller than 75x75; enable resize_input");
  x = Conv2d_1a_3x3->forward(x);
  x = Conv2d_2a_3x3->forward(x);
  x = Conv2d_2b_3x3->forward(x);
  x = max3s2(x);
  x = Conv2d_3b_1x1->forward(x);
  x = Conv2d_4a_3x3->forward(x);
  x = max3s2(x);
  x = Mixed_5b->forward(x);
  x = Mixed_5c->forward(x);
  x = Mixed_5d->forward(x);
  x = Mixed_6a->forward(x);
  x = Mixed_6b->forward(x);
  x = Mixed_6c->forward(x);
  x = Mixed_6d->forward(x);
  x = Mixed_6e->forward(x);
  x = Mixed_7a->forward(x);
  x = Mixed_7b->forward(x);
  x = Mixed_7c->forward(x);
  return x.mean({2, 3});  // adaptive average pool to 1x1, flattened
}

at::Tensor InceptionV3Impl::logits(const at::Tensor& pool) {
  CTFGEN_CHECK_SHAPE(pool, {-1, 2048}, "InceptionV3 pool features");
  return fc->forward(pool);
}

at::Tensor InceptionV3Impl::forward(const at::Tensor& x) { return logits(features(x)); }

void save_inception(const std::string& path, InceptionV3& model, const nlohmann::json& meta) {
  io::save_component(path, "inception", model->config.to_json(), io::module_tensors(*model), meta);
}

InceptionV3 load_inception(const std::string& path, const InceptionConfig& fallback) {
  auto file = io::load_safetensors(path);
  InceptionConfig config = fallback;
  auto fmt = file.metadata.find("format");
  if (fmt != file.metadata.end() && fmt->second == "ctfgen") {
    auto comp = io::load_component(path, "inception");
    config = InceptionConfig::from_json(comp.config);
    file = std::move(comp.file);
  }
  config.validate();
  InceptionV3 model(config);
  std::set<std::string> counters;
  for (const auto& b : model->named_buffers(true))
    if (b.key().size() > 20 && b.key().rfind(".num_batches_tracked") == b.key().size() - 20)
      counters.insert(b.key());
  // AuxLogits only exists in training-time torchvision checkpoints; it never affects features.
  std::set<std::string> ignore = counters;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind("AuxLogits.", 0) == 0) ignore.insert(name);
  io::load_module_strict(*model, file, "", ignore);
  model->eval();
  model->to(default_device());
  log::debug("loaded Inception-v3 (", config.variant, ", ", config.num_classes, " classes) from ",
             path);
  return model;
}

InceptionNet::InceptionNet(InceptionV3 model) : model_(std::move(model)) {
  model_->eval();
  identity_ = network_identity("inception", model_->config.to_json().dump(),
                               io::hash_tensors(io::module_tensors(*model_)));
}

FeatureOutput InceptionNet::run(const at::Tensor& images) {
  CTFGEN_CHECK(images.dim() == 4 && (images.size(1) == 1 || images.size(1) == 3),
               "InceptionNet: expected images [B, 1 or 3, H, W], got ", shape_str(images.sizes()));
  torch::NoGradGuard no_grad;
  model_->eval();
  auto x = images.to(module_device(*model_), torch::kFloat);
  if (x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
  FeatureOutput out;
  out.features = model_->features(x.contiguous());
  out.probs = torch::softmax(model_->logits(out.features), 1);
  return out;
}

}  // namespace ctfgen::eval
