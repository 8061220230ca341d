// A small CNN classifier for our datasets (Fashion-MNIST 28 px gray, emoji/sprites 32/64 px RGB).
// It is the practical feature network for FID / precision / recall here, because no pretrained
// Inception weights exist on this machine (docs/evaluation.md): features() is the global average
// pool of the last conv stage (like Inception's pool3), forward() adds one linear layer.
//
// Architecture (w = width): stages of two [conv3x3 -> BatchNorm -> ReLU] with widths
// w, 2w, 4w (and 4w again for image_size > 32), 2x2 max pool between stages, global average pool
// -> features [B, 4w] -> fc -> logits. Tensor names: "conv<i>.weight", "bn<i>.*", "fc.*".
// With embed_dim > 0 a 1x1 conv ("embed.weight", "embed_bn.*") widens the last stage to
// embed_dim channels before the pool, so the features are embed_dim wide at little cost
// (docs/evaluation.md: the study's evaluator uses width 24, embed_dim 256).
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
#include "train/optim.h"
#include "train/trainer.h"

namespace ctfgen::eval {

struct ClassifierConfig {
  int64_t in_channels = 1;   // image channels C (1 or 3)
  int64_t image_size = 28;   // H = W the classifier is trained on (inputs are resized to it)
  int64_t num_classes = 10;  // output classes
  int64_t width = 16;        // channels of the first stage; features have 4 * width dimensions
  int64_t embed_dim = 0;     // > 0: 1x1 conv to this many channels before the pool (features)

  int64_t num_stages() const { return image_size > 32 ? 4 : 3; }
  int64_t feature_dim() const { return embed_dim > 0 ? embed_dim : 4 * width; }
  nlohmann::json to_json() const;
  static ClassifierConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("in_channels", self.in_channels);
    visit("image_size", self.image_size);
    visit("num_classes", self.num_classes);
    visit("width", self.width);
    visit("embed_dim", self.embed_dim);
  }
  void validate() const;
};

struct ClassifierImpl : torch::nn::Module {
  explicit ClassifierImpl(ClassifierConfig config = {});
  /// x: [B, C, image_size, image_size] in [-1, 1] -> [B, 4 * width]
  at::Tensor features(const at::Tensor& x);
  /// features: [B, 4 * width] -> logits [B, num_classes]
  at::Tensor head(const at::Tensor& features);
  /// x: [B, C, image_size, image_size] -> logits [B, num_classes]
  at::Tensor forward(const at::Tensor& x);

  ClassifierConfig config;
  std::vector<torch::nn::Conv2d> convs;
  std::vector<torch::nn::BatchNorm2d> bns;
  torch::nn::Conv2d embed{nullptr};        // embed_dim > 0 only
  torch::nn::BatchNorm2d embed_bn{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Classifier);

/// Writes a component file of kind "classifier" (meta: e.g. dataset, steps, test accuracy).
void save_classifier(const std::string& path, Classifier& model,
                     const nlohmann::json& meta = nlohmann::json::object());
/// Loads a "classifier" component (strict), in eval mode, on default_device() (core/device.h).
Classifier load_classifier(const std::string& path);

/// Top-1 accuracy of `model` (eval mode, no gradients) on x [N, C, S, S] in [-1, 1], y [N] int64.
double classifier_accuracy(Classifier& model, const at::Tensor& x, const at::Tensor& y,
                           int64_t batch = 500);

/// FeatureNet over a trained classifier: resizes inputs (bilinear) to image_size; channel counts
/// must match the classifier's. Probabilities are softmax(logits).
class ClassifierNet : public FeatureNet {
 public:
  explicit ClassifierNet(Classifier model);
  FeatureOutput run(const at::Tensor& images) override;
  int64_t feature_dim() const override { return model_->config.feature_dim(); }
  int64_t num_classes() const override { return model_->config.num_classes; }
  std::string identity() const override { return identity_; }
  std::string name() const override { return "classifier"; }
  Classifier& model() { return model_; }

 private:
  Classifier model_;
  std::string identity_;
};

struct ClassifierTrainConfig {
  int64_t batch = 128;        // training batch size
  bool hflip = false;         // random horizontal flips (off by default: see docs/evaluation.md)
  int64_t shift = 0;          // random translation by up to this many pixels (edge padding)
  int64_t eval_batch = 500;   // batch size for the test-accuracy pass
  train::TrainerConfig trainer;  // steps, checkpoint_every, log_every, seed
  train::OptimConfig optim = default_optim();

  static train::OptimConfig default_optim();  // AdamW lr 2e-3, betas (0.9, 0.999), wd 1e-4, cosine
  nlohmann::json to_json() const;
  static ClassifierTrainConfig from_json(const nlohmann::json& j);
  /// The fields of the JSON form, listed once (core/json_config.h).
  template <typename Self, typename Visit>
  static void fields(Self& self, Visit&& visit) {
    visit("batch", self.batch);
    visit("hflip", self.hflip);
    visit("shift", self.shift);
    visit("eval_batch", self.eval_batch);
    visit("trainer", self.trainer);
    visit("optim", self.optim);
  }
  void validate() const;
};

struct ClassifierTrainResult {
  double test_accuracy = 0;   // top-1 on the test split after the last step
  double train_loss = 0;      // mean cross-entropy over the last logged window
  int64_t steps = 0;          // steps completed (including resumed ones)
  double seconds = 0;         // wall time of this call (training + test pass)
  bool resumed = false;
};

/// Trains `model` with the shared Trainer (checkpoints and resume in run_dir) on
/// train_x [N, C, S, S] in [-1, 1], train_y [N] int64 in [0, num_classes), then measures test
/// accuracy on test_x/test_y. Leaves the model in eval mode. `dist` (optional, not owned) makes
/// this one rank of a data-parallel run with a global batch of world size x config.batch;
/// BatchNorm normalises over each rank's slice and its running statistics follow rank 0's.
ClassifierTrainResult train_classifier(Classifier& model, const at::Tensor& train_x,
                                       const at::Tensor& train_y, const at::Tensor& test_x,
                                       const at::Tensor& test_y,
                                       const ClassifierTrainConfig& config,
                                       const std::string& run_dir,
                                       train::DistContext* dist = nullptr);

}  // namespace ctfgen::eval
