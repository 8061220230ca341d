// Inception-v3 as used for FID: pytorch-fid's variant of the TensorFlow "inception-2015-12-05"
// graph (FIDInceptionA/C/E_1/E_2 blocks: average pools that exclude padding, a max pool in the
// last block, 1008 logits), or plain torchvision Inception3 (variant "torchvision").
//
// Parameter and buffer names equal torchvision's inception_v3 state dict (aux_logits=False):
// "Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch1x1.bn.running_mean", ..., "fc.weight", so a
// state dict converted with tests/python/convert_inception.py loads as is (docs/evaluation.md).
// No pretrained weights exist on this machine; the user supplies them.
//
// Input: images [B, 3, H, W] in [-1, 1] (the range the Google weights expect), resized to
// 299x299 bilinearly (align_corners=false) as pytorch-fid does. Grayscale is repeated to 3
// channels by InceptionNet. torchvision's transform_input is not needed: it maps ImageNet-
// normalised input into this same [-1, 1] domain.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/feature_net.h"

namespace ctfgen::eval {

struct InceptionConfig {
  std::string variant = "fid";  // "fid" (pytorch-fid blocks) or "torchvision" (plain Inception3)
  int64_t num_classes = 1008;   // logits: 1008 for the FID weights, 1000 for torchvision's
  bool resize_input = true;     // bilinear resize to 299x299 before the network

  bool fid() const { return variant == "fid"; }
  nlohmann::json to_json() const;
  static InceptionConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("variant", self.variant);
    visit("num_classes", self.num_classes);
    visit("resize_input", self.resize_input);
  }
  void validate() const;
};

/// conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU. Names: "conv", "bn".
struct BasicConv2dImpl : torch::nn::Module {
  BasicConv2dImpl(int64_t in, int64_t out, std::vector<int64_t> kernel,
                  std::vector<int64_t> stride = {1, 1}, std::vector<int64_t> padding = {0, 0});
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(BasicConv2d);

/// Mixed_5b/5c/5d. fid: the branch_pool average excludes padding (FIDInceptionA).
struct InceptionAImpl : torch::nn::Module {
  InceptionAImpl(int64_t in, int64_t pool_features, bool fid);
  at::Tensor forward(const at::Tensor& x);  // [B, in, H, W] -> [B, 224 + pool_features, H, W]
  bool fid;
  BasicConv2d branch1x1{nullptr}, branch5x5_1{nullptr}, branch5x5_2{nullptr},
      branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr}, branch3x3dbl_3{nullptr},
      branch_pool{nullptr};
};
TORCH_MODULE(InceptionA);

/// Mixed_6a (grid reduction).
struct InceptionBImpl : torch::nn::Module {
  explicit InceptionBImpl(int64_t in);
  at::Tensor forward(const at::Tensor& x);  // [B, in, H, W] -> [B, in + 480, H', W']
  BasicConv2d branch3x3{nullptr}, branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr},
      branch3x3dbl_3{nullptr};
};
TORCH_MODULE(InceptionB);

/// Mixed_6b..6e. fid: the branch_pool average excludes padding (FIDInceptionC).
struct InceptionCImpl : torch::nn::Module {
  InceptionCImpl(int64_t in, int64_t channels_7x7, bool fid);
  at::Tensor forward(const at::Tensor& x);  // [B, in, H, W] -> [B, 768, H, W]
  bool fid;
  BasicConv2d branch1x1{nullptr}, branch7x7_1{nullptr}, branch7x7_2{nullptr},
      branch7x7_3{nullptr}, branch7x7dbl_1{nullptr}, branch7x7dbl_2{nullptr},
      branch7x7dbl_3{nullptr}, branch7x7dbl_4{nullptr}, branch7x7dbl_5{nullptr},
      branch_pool{nullptr};
};
TORCH_MODULE(InceptionC);

/// Mixed_7a (grid reduction).
struct InceptionDImpl : torch::nn::Module {
  explicit InceptionDImpl(int64_t in);
  at::Tensor forward(const at::Tensor& x);  // [B, in, H, W] -> [B, in + 512, H', W']
  BasicConv2d branch3x3_1{nullptr}, branch3x3_2{nullptr}, branch7x7x3_1{nullptr},
      branch7x7x3_2{nullptr}, branch7x7x3_3{nullptr}, branch7x7x3_4{nullptr};
};
TORCH_MODULE(InceptionD);

/// How Mixed_7b/7c pool their last branch.
enum class EPool {
  AvgIncludePad,  // torchvision InceptionE
  AvgExcludePad,  // FIDInceptionE_1 (Mixed_7b)
  Max,            // FIDInceptionE_2 (Mixed_7c)
};

struct InceptionEImpl : torch::nn::Module {
  InceptionEImpl(int64_t in, EPool pool);
  at::Tensor forward(const at::Tensor& x);  // [B, in, H, W] -> [B, 2048, H, W]
  EPool pool;
  BasicConv2d branch1x1{nullptr}, branch3x3_1{nullptr}, branch3x3_2a{nullptr},
      branch3x3_2b{nullptr}, branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr},
      branch3x3dbl_3a{nullptr}, branch3x3dbl_3b{nullptr}, branch_pool{nullptr};
};
TORCH_MODULE(InceptionE);

struct InceptionV3Impl : torch::nn::Module {
  explicit InceptionV3Impl(InceptionConfig config = {});
  /// x: [B, 3, H, W] in [-1, 1] -> pool3 features [B, 2048] (after the global average pool).
  at::Tensor features(const at::Tensor& x);
  /// pool: [B, 2048] -> [B, num_classes] (the fc layer; dropout is a no-op in eval mode).
  at::Tensor logits(const at::Tensor& pool);
  /// x: [B, 3, H, W] -> logits [B, num_classes]
  at::Tensor forward(const at::Tensor& x);

  InceptionConfig config;
  BasicConv2d Conv2d_1a_3x3{nullptr}, Conv2d_2a_3x3{nullptr}, Conv2d_2b_3x3{nullptr},
      Conv2d_3b_1x1{nullptr}, Conv2d_4a_3x3{nullptr};
  InceptionA Mixed_5b{nullptr}, Mixed_5c{nullptr}, Mixed_5d{nullptr};
  InceptionB Mixed_6a{nullptr};
  InceptionC Mixed_6b{nullptr}, Mixed_6c{nullptr}, Mixed_6d{nullptr}, Mixed_6e{nullptr};
  InceptionD Mixed_7a{nullptr};
  InceptionE Mixed_7b{nullptr}, Mixed_7c{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(InceptionV3);

/// Writes a component file of kind "inception".
void save_inception(const std::string& path, InceptionV3& model,
                    const nlohmann::json& meta = nlohmann::json::object());

/// Loads weights: a ctfgen component of kind "inception" (its stored config is used), or a plain
/// safetensors file of torchvision-named tensors (then `config` gives the variant and class
/// count). Strict about names and shapes, except that BatchNorm "num_batches_tracked" counters
/// may be absent (older state dicts lack them). Returns the model in eval mode on
/// default_device() (core/device.h).
InceptionV3 load_inception(const std::string& path, const InceptionConfig& config = {});

/// FeatureNet over Inception-v3: pool3 features [B, 2048] and softmax over all logits.
class InceptionNet : public FeatureNet {
 public:
  explicit InceptionNet(InceptionV3 model);
  FeatureOutput run(const at::Tensor& images) override;
  int64_t feature_dim() const override { return 2048; }
  int64_t num_classes() const override { return model_->config.num_classes; }
  std::string identity() const override { return identity_; }
  std::string name() const override { return "inception-" + model_->config.variant; }
  InceptionV3& model() { return model_; }

 private:
  InceptionV3 model_;
  std::string identity_;
};

}  // namespace ctfgen::eval
